//! The claim rules JWTs and introspection responses share (RFC 7519 §4.1, RFC 7662 §2.2).

use serde_json::{Map, Value};

use crate::principal::numeric_date;
use crate::reject::{AuthError, AuthErrorKind};

fn claim_err(kind: AuthErrorKind, what: &'static str) -> AuthError {
    AuthError::new(kind).with_description(what)
}

/// A `NumericDate` claim: absent, or a finite number (anything else is a type error).
pub(crate) fn time_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => numeric_date(v)
            .map(Some)
            .ok_or_else(|| claim_err(AuthErrorKind::InvalidClaimType, "invalid time claim")),
    }
}

/// `nbf` and `iat`, when present, no later than `now + leeway`. Returns `iat`.
pub(crate) fn check_not_before(
    claims: &Map<String, Value>,
    now: f64,
    leeway: f64,
) -> Result<Option<f64>, AuthError> {
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now + leeway
    {
        return Err(AuthError::new(AuthErrorKind::NotYetValid));
    }
    let iat = time_claim(claims, "iat")?;
    if let Some(iat) = iat
        && iat > now + leeway
    {
        return Err(AuthError::new(AuthErrorKind::IssuedInFuture));
    }
    Ok(iat)
}

/// `iss`: a string when present; required and one of `issuers` when any is configured.
pub(crate) fn check_issuer(
    claims: &Map<String, Value>,
    issuers: &[String],
) -> Result<(), AuthError> {
    match claims.get("iss") {
        None if issuers.is_empty() => Ok(()),
        None => Err(claim_err(AuthErrorKind::MissingClaim, "missing iss claim")),
        Some(Value::String(iss)) if issuers.is_empty() || issuers.iter().any(|i| i == iss) => {
            Ok(())
        }
        Some(Value::String(_)) => Err(AuthError::new(AuthErrorKind::InvalidIssuer)),
        Some(_) => Err(claim_err(
            AuthErrorKind::InvalidClaimType,
            "invalid iss claim",
        )),
    }
}

/// `aud`: a string or an array of strings when present; required and containing one of
/// `audiences` when any is configured. With none configured, `unconfigured_ok` decides
/// whether a token carrying `aud` passes.
pub(crate) fn check_audience(
    aud: Option<&Value>,
    audiences: &[String],
    unconfigured_ok: bool,
) -> Result<(), AuthError> {
    let wrong_type = || claim_err(AuthErrorKind::InvalidClaimType, "invalid aud claim");
    let wanted = |v: &str| audiences.iter().any(|a| a == v);
    // Every member is type-checked, whether or not an earlier one matched.
    let matched = match aud {
        None if audiences.is_empty() => return Ok(()),
        None => return Err(claim_err(AuthErrorKind::MissingClaim, "missing aud claim")),
        Some(Value::String(s)) => wanted(s),
        Some(Value::Array(items)) => {
            let mut any = false;
            for item in items {
                any |= wanted(item.as_str().ok_or_else(wrong_type)?);
            }
            any
        }
        Some(_) => return Err(wrong_type()),
    };
    if (audiences.is_empty() && unconfigured_ok) || matched {
        Ok(())
    } else {
        Err(AuthError::new(AuthErrorKind::InvalidAudience))
    }
}
