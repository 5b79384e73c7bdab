//! Bearer tokens: an admin token for management, a viewer token for
//! reading the fleet (API reads, the dashboard, metrics), an enrolment
//! token for registering new devices, and one token per device (stored
//! hashed, so a leaked database does not leak credentials).
//!
//! [`require`] enforces the route table's [`Auth`] of each route before its
//! handler runs, so a request without the right token is refused before
//! its body is read (a 401, never a 413 on an unauthenticated upload).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::config::ServiceConfig;
use super::error::AppError;
use super::openapi::{Auth, VIEWER_COOKIE};
use super::store::{Store, hex};

/// A fresh random token (256 bits, hex).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// SHA-256 of a token, hex: what the database keeps.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares two secrets through their hashes (no early exit on the secret itself).
pub fn same_secret(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The value of the cookie `name` of a request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// What the gate of one route checks: the route's [`Auth`] with what it
/// needs to check it.
#[derive(Clone)]
pub struct Gate {
    /// The route table's rule for this route.
    pub auth: Auth,
    /// Tokens and `--public-dashboard`.
    pub config: Arc<ServiceConfig>,
    /// Device tokens.
    pub store: Store,
}

/// Middleware of every route: checks the caller against the route's
/// [`Auth`] before the handler reads anything. A device token's device is
/// handed on to the handler as a [`DeviceAuth`] extension (one lookup).
pub async fn require(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    match admit(&gate, &mut req).await {
        Ok(None) => next.run(req).await,
        Ok(Some(answer)) => answer,
        Err(e) => e.into_response(),
    }
}

/// `Ok(None)`: let the request through; `Ok(Some(_))`: answer it here (the
/// dashboard's token login).
async fn admit(gate: &Gate, req: &mut Request) -> Result<Option<Response>, AppError> {
    let config = &gate.config;
    let token = bearer(req.headers());
    let device = |token: Option<&str>| {
        let store = gate.store.clone();
        let hash = token.map(hash_token);
        async move {
            match hash {
                Some(h) => store.device_by_token(&h).await,
                None => Ok(None),
            }
        }
    };
    match gate.auth {
        Auth::Public => {}
        Auth::Dashboard if config.public_dashboard => {}
        Auth::Dashboard | Auth::Viewer => {
            if gate.auth == Auth::Dashboard
                && let Some(given) = query_token(req.uri())
            {
                return login(config, req.uri(), &given).map(Some);
            }
            let presented = token.or_else(|| cookie(req.headers(), VIEWER_COOKIE));
            if !presented.is_some_and(|t| may_read(config, t)) {
                return Err(AppError::Unauthorized(format!(
                    "reading needs the viewer or admin token (Authorization: Bearer TOKEN{})",
                    if gate.auth == Auth::Dashboard {
                        ", or open the dashboard once as /?token=TOKEN"
                    } else {
                        ""
                    }
                )));
            }
        }
        Auth::Admin => {
            if !token.is_some_and(|t| same_secret(t, &config.admin_token)) {
                return Err(AppError::Unauthorized(
                    "missing or wrong admin token (Authorization: Bearer ADMIN_TOKEN)".into(),
                ));
            }
        }
        Auth::Device | Auth::DeviceOrAdmin | Auth::EnrolmentOrDevice => {
            let other_ok = match gate.auth {
                Auth::DeviceOrAdmin => token.is_some_and(|t| same_secret(t, &config.admin_token)),
                Auth::EnrolmentOrDevice => {
                    token.is_some_and(|t| same_secret(t, &config.enrol_token))
                }
                _ => false,
            };
            if !other_ok {
                match device(token).await? {
                    Some(device_id) => {
                        req.extensions_mut().insert(DeviceAuth { device_id });
                    }
                    None => {
                        return Err(AppError::Unauthorized(
                            format!(
                                "{} token",
                                if token.is_some() {
                                    "unknown"
                                } else {
                                    "missing"
                                }
                            ) + match gate.auth {
                                Auth::DeviceOrAdmin => " (a device or the admin token)",
                                Auth::EnrolmentOrDevice => " (the enrolment or a device token)",
                                _ => " (a device token)",
                            },
                        ));
                    }
                }
            }
        }
    }
    Ok(None)
}

/// Whether `token` may read: the viewer token (when one is set) or the
/// admin token.
pub fn may_read(config: &ServiceConfig, token: &str) -> bool {
    same_secret(token, &config.admin_token)
        || config
            .viewer_token
            .as_deref()
            .is_some_and(|v| same_secret(token, v))
}

/// The `token` query parameter of a dashboard URL.
fn query_token(uri: &Uri) -> Option<String> {
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    q.get("token").cloned()
}

/// `?token=` on a dashboard page: a read token sets the viewer cookie
/// (HttpOnly, SameSite=Strict) and redirects to the same page without the
/// token, so it does not stay in the address bar or history.
fn login(config: &ServiceConfig, uri: &Uri, given: &str) -> Result<Response, AppError> {
    if !may_read(config, given) {
        return Err(AppError::Unauthorized(
            "the dashboard's `token` is neither the viewer nor the admin token".into(),
        ));
    }
    let cookie_safe = given
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
    if !cookie_safe {
        return Err(AppError::BadRequest(
            "this token has characters a cookie cannot carry: send it as a bearer header".into(),
        ));
    }
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token=") && *p != "token")
        .collect();
    let location = if rest.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    };
    let cookie = format!("{VIEWER_COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
    let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) else {
        return Err(AppError::BadRequest(
            "the dashboard URL or token has characters a header cannot hold".into(),
        ));
    };
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
    )
        .into_response())
}

/// A request made with the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Arc<ServiceConfig>: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let config = Arc::<ServiceConfig>::from_ref(state);
        match bearer(&parts.headers) {
            None => Err(AppError::Unauthorized(
                "missing bearer token (Authorization: Bearer ADMIN_TOKEN)".into(),
            )),
            Some(t) if same_secret(t, &config.admin_token) => Ok(Admin),
            Some(_) => Err(AppError::Unauthorized("wrong admin token".into())),
        }
    }
}

/// A request made with a device's own token.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    /// The device the token belongs to.
    pub device_id: String,
}

impl<S> FromRequestParts<S> for DeviceAuth
where
    S: Send + Sync,
    Store: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        if let Some(known) = parts.extensions.get::<DeviceAuth>() {
            return Ok(known.clone());
        }
        let token = bearer(&parts.headers)
            .ok_or_else(|| AppError::Unauthorized("missing device bearer token".into()))?;
        match Store::from_ref(state)
            .device_by_token(&hash_token(token))
            .await?
        {
            Some(device_id) => Ok(DeviceAuth { device_id }),
            None => Err(AppError::Unauthorized("unknown device token".into())),
        }
    }
}

/// Checks that the device named in a body is the token's device.
pub fn expect_device(auth: &DeviceAuth, named: &str) -> Result<(), AppError> {
    if auth.device_id == named {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "this token belongs to device `{}`, not `{named}`",
            auth.device_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_compare() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), t);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; nasflat_viewer=tok; b=2"),
        );
        assert_eq!(cookie(&h, VIEWER_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
