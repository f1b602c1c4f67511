//! Authentication and the role table: which token may do what. Runs around the routing, so an
//! anonymous client gets 401 whatever the path or method, and a token used outside its role 403
//! before any handler runs. Tokens are compared in constant time, every configured one each time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::config::{Role, Token};
use crate::protocol::twilio::STATUS_CALLBACK_PATH;

/// Paths answered without a token: the liveness and readiness probes, and the Twilio status
/// callback, which Twilio authenticates with its request signature instead (checked by its handler).
pub(super) fn is_open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || path.trim_end_matches('/') == STATUS_CALLBACK_PATH
}

/// Whether `role` may send `method` to `path`: admin everything; viewer reads only (`GET`,
/// `HEAD`); provider only the outcome callback (`PUT /api/v1/callback/`).
pub fn role_allows(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::Admin => true,
        Role::Viewer => method == Method::GET || method == Method::HEAD,
        Role::Provider => method == Method::PUT && path.trim_end_matches('/') == "/api/v1/callback",
    }
}

/// The role of the configured token equal to `presented`. Every token is compared in constant
/// time, whichever matches, so the time taken says nothing about which one (or how much of it) matched.
pub fn token_role(tokens: &[Token], presented: &str) -> Option<Role> {
    use subtle::ConstantTimeEq;
    let mut found = None;
    for token in tokens {
        let equal: bool = token.secret.as_bytes().ct_eq(presented.as_bytes()).into();
        if equal {
            found = Some(token.role);
        }
    }
    found
}

/// `X-Auth-Token: <token>` or `Authorization: Bearer <token>`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_open_path(request.uri().path()) {
        return next.run(request).await;
    }
    match presented_token(request.headers()).and_then(|t| token_role(&state.live.tokens(), t)) {
        None => ApiError::Unauthorized.into_response(),
        Some(role) if role_allows(role, request.method(), request.uri().path()) => next.run(request).await,
        Some(role) => ApiError::Forbidden(format!("A {} token may not {} {}", role.as_str(), request.method(), request.uri().path())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        let cases: &[(Role, Method, &str, bool)] = &[
            (Role::Admin, Method::POST, "/api/v1/campaigns/", true),
            (Role::Admin, Method::PUT, "/api/v1/callback/", true),
            (Role::Admin, Method::DELETE, "/api/v1/dnc/+14155550100/", true),
            (Role::Viewer, Method::GET, "/api/v1/metrics/", true),
            (Role::Viewer, Method::GET, "/api/v1/calls/export/", true),
            (Role::Viewer, Method::GET, "/metrics", true),
            (Role::Viewer, Method::POST, "/api/v1/campaigns/", false),
            (Role::Viewer, Method::PUT, "/api/v1/callback/", false),
            (Role::Viewer, Method::POST, "/api/v1/dlq/replay/", false),
            (Role::Provider, Method::PUT, "/api/v1/callback/", true),
            (Role::Provider, Method::PUT, "/api/v1/callback", true),
            (Role::Provider, Method::GET, "/api/v1/calls/", false),
            (Role::Provider, Method::GET, "/api/v1/metrics/", false),
            (Role::Provider, Method::POST, "/api/v1/callback/", false),
            (Role::Provider, Method::PUT, "/api/v1/callbacks/", false),
            (Role::Provider, Method::POST, "/api/v1/initiate-call/", false),
        ];
        for (role, method, path, allowed) in cases {
            assert_eq!(role_allows(*role, method, path), *allowed, "{role:?} {method} {path}");
        }
    }

    #[test]
    fn tokens_resolve_to_their_role() {
        let tokens = vec![
            Token { secret: "admin-token-1".into(), role: Role::Admin },
            Token { secret: "viewer-token-1".into(), role: Role::Viewer },
            Token { secret: "provider-token-1".into(), role: Role::Provider },
        ];
        assert_eq!(token_role(&tokens, "viewer-token-1"), Some(Role::Viewer));
        assert_eq!(token_role(&tokens, "provider-token-1"), Some(Role::Provider));
        assert_eq!(token_role(&tokens, "admin-token-1"), Some(Role::Admin));
        assert_eq!(token_role(&tokens, "admin-token-"), None);
        assert_eq!(token_role(&tokens, ""), None);
    }

    #[test]
    fn open_paths_need_no_token() {
        assert!(is_open_path("/healthz") && is_open_path("/readyz"));
        assert!(is_open_path("/api/v1/providers/twilio/status") && is_open_path("/api/v1/providers/twilio/status/"));
        assert!(!is_open_path("/api/v1/providers/twilio/statuses") && !is_open_path("/api/v1/callback/"));
    }
}
