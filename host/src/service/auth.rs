//! Bearer tokens: an admin token for management, an enrolment token for
//! registering new devices, and one token per device (stored hashed, so a
//! leaked database does not leak credentials).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::config::ServiceConfig;
use super::error::AppError;
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
    }
}
