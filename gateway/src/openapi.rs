//! The frame of the OpenAPI document served at `/api/openapi.json`; the
//! paths and schemas come from the handlers and types themselves. Added
//! here once the routes are in: the session cookie as the security scheme
//! of every operation but login, and the links from a started request to
//! its status, result and events (what a client, or a stateful fuzzer,
//! follows next).

use utoipa::{
    openapi::{
        link::Link,
        security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme},
        OpenApi as Document,
    },
    OpenApi,
};

/// The security scheme's name in the document.
const SESSION: &str = "session";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Storefront gateway",
        description = "Login and pages composed from events. Requests wait up to a sync budget, then answer 202 Accepted with a status URL that any gateway serves; the result is also streamed as Server-Sent Events and, where a callback URL is given, POSTed there signed per the Standard Webhooks spec. Every error is `{\"error\": {\"code\", \"message\"}}`. The session cookie `sf_session` authenticates every call but login.",
    ),
    tags((name = "pages", description = "Login, pages and the asynchronous request-reply API"))
)]
struct ApiDoc;

/// The document's info and tags, before the routes add their paths.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// Completes the document once every route is in it: the session cookie
/// as the security of every operation but login (which opens a session),
/// and links from each response naming a request to what can be asked of it.
pub fn finish(document: &mut Document) {
    let components = document.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        SESSION.into(),
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::cookies::COOKIE_NAME,
            "The signed session cookie that login sets",
        )))
        .into(),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in [("get", item.get.as_mut()), ("post", item.post.as_mut())] {
            let Some(operation) = operation else { continue };
            let session = SecurityRequirement::new(SESSION, Vec::<String>::new());
            operation.security = Some(match (path.as_str(), method) {
                ("/api/login", "post") => vec![SecurityRequirement::default()],
                // Logging out without a session is allowed: it clears the cookie.
                ("/api/logout", "post") => vec![session, SecurityRequirement::default()],
                _ => vec![session],
            });
            let names_a_request = matches!(
                (path.as_str(), method),
                ("/api/login", "post") | ("/api/pages", "post")
            );
            if !names_a_request {
                continue;
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else {
                    continue;
                };
                if !matches!(status.as_str(), "200" | "202") {
                    continue;
                }
                for (name, operation_id) in [
                    ("status", "status"),
                    ("result", "result"),
                    ("events", "events"),
                ] {
                    let link = Link::builder()
                        .operation_id(operation_id)
                        .parameter("id", "$response.body#/request_id")
                        .description(format!("The request's {name}"))
                        .build();
                    response.links.insert(name.into(), link.into());
                }
            }
        }
    }
}
