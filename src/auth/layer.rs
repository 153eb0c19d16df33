use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::extract::Extractor;
use crate::reject::Renderer;
use crate::validate::Authenticator;

use super::BearerAuth;

/// Configuration shared by every clone of the service.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) extractor: Extractor,
    pub(crate) renderer: Renderer,
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
        self.update(|s| s.renderer = renderer)
    }

    /// The realm named in challenges (keeps any custom body already set).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.update(|s| s.renderer = s.renderer.clone().with_realm(realm))
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::new(inner, self.shared.clone())
    }
}
