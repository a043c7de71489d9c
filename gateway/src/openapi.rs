//! The frame of the OpenAPI document served at `/api/openapi.json`; the
//! paths and schemas come from the handlers and types themselves.

use utoipa::OpenApi;

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
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
