use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::extract::Extractor;
use crate::network::TransportPolicy;
use crate::reject::Renderer;
use crate::sender::SenderConstraints;
use crate::validate::Authenticator;

use super::BearerAuth;

/// Configuration shared by every clone of the service.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) extractor: Extractor,
    pub(crate) renderer: Renderer,
    /// Checked first, before any token is read; `None`: any scheme.
    pub(crate) transport: Option<TransportPolicy>,
    /// Remove the credential before calling the inner service.
    pub(crate) strip_credentials: bool,
    /// DPoP and mTLS-bound tokens; `None`: bearer tokens only, no `cnf` check.
    pub(crate) sender: Option<SenderConstraints>,
}

/// Applies [`BearerAuth`] to a service. Holds configuration only; cheap to clone.
#[derive(Clone)]
#[must_use]
pub struct BearerAuthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("extractor", &self.shared.extractor)
            .field("renderer", &self.shared.renderer)
            .field("transport", &self.shared.transport)
            .field("strip_authorization", &self.shared.strip_credentials)
            .field("sender_constraints", &self.shared.sender)
            .finish_non_exhaustive()
    }
}

impl BearerAuthLayer {
    /// A layer authenticating with `authenticator`, reading `Authorization: Bearer` only, with
    /// the realm `api`.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self::from_arc(Arc::new(authenticator))
    }

    /// A layer around an already shared authenticator.
    pub fn from_arc(authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            shared: Arc::new(Shared {
                authenticator,
                extractor: Extractor::new(),
                renderer: Renderer::default(),
                transport: None,
                strip_credentials: false,
                sender: None,
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Where credentials are read from, and the size cap.
    pub fn extractor(self, extractor: Extractor) -> Self {
        self.update(|s| s.extractor = extractor)
    }

    /// How rejections are rendered.
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.update(|s| {
            let algs = s.sender.as_ref().and_then(SenderConstraints::dpop_algs);
            s.renderer = renderer.with_dpop_algs(algs);
        })
    }

    /// Accepts sender-constrained tokens, DPoP (RFC 9449) and certificate-bound (RFC 8705),
    /// and sets the policy of every route behind the layer; see [`crate::sender`]. Off by
    /// default: only plain bearer tokens are accepted, and a token bound to a key or a
    /// certificate (any `cnf` member) is refused, since nothing checks its binding.
    pub fn sender_constraints(self, constraints: SenderConstraints) -> Self {
        self.update(|s| {
            s.renderer = s.renderer.clone().with_dpop_algs(constraints.dpop_algs());
            s.sender = Some(constraints);
        })
    }

    /// The realm named in challenges (keeps any custom body already set).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.update(|s| s.renderer = s.renderer.clone().with_realm(realm))
    }

    /// Refuses requests that did not arrive over HTTPS (judged from the connection, or from a
    /// trusted proxy's forwarding header), before any token is read: 400 `invalid_request`.
    /// Off by default; see [`TransportPolicy`] for the rules and the loopback exemption.
    pub fn transport(self, policy: TransportPolicy) -> Self {
        self.update(|s| s.transport = Some(policy))
    }

    /// With `true`, removes the credential from the request before the inner service sees
    /// it: the `Authorization` header, and the cookie, custom header or `access_token` query
    /// parameter the token was read from. Off by default. Credential headers are marked
    /// [sensitive](http::HeaderValue::set_sensitive) either way.
    pub fn strip_authorization(self, strip: bool) -> Self {
        self.update(|s| s.strip_credentials = strip)
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::new(inner, self.shared.clone())
    }
}
