//! Test support: HTTP clients that present an API token, and a signed-in caller for the page
//! fragments tests render directly.

use super::guard::Caller;
use crate::auth::{Principal, Via};
use crate::domain::{Role, ScopeEntry};

/// A client that sends `Authorization: Bearer <token>` with every request and does not follow
/// redirects (so a test sees a page's 303). An empty token makes an anonymous client.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = format!("Bearer {token}").parse() {
        if !token.is_empty() {
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// A caller with `role` over `scope`, as the guard would hand it to a handler.
pub fn caller(role: Role, scope: Vec<ScopeEntry>) -> Caller {
    Caller {
        principal: Some(Principal {
            user_id: 0,
            username: format!("test-{role}"),
            display_name: format!("test {role}"),
            role,
            scope,
            via: Via::Token("test".into()),
        }),
        csrf: None,
        origin: "test".into(),
        ..Caller::default()
    }
}
