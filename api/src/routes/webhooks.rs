//! `/webhooks`: where an account is told about backup outcomes (issue 14 §5): HTTPS endpoints that get
//! signed POSTs, or e-mail addresses (`mailto:`), and every delivery attempt made to them.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use listbackup_domain::source_group::Description;
use listbackup_domain::webhook::{NotificationType, Subscriptions, WebhookTarget};
use listbackup_domain::ResourceKind;
use listbackup_projections::read_models::webhooks::{self as read, DeliveryView, WebhookView};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::consistency::{read_back, wait_for};
use crate::error::{ApiError, FieldError};
use crate::extract::{
    if_match, page_request, with_etag, JsonBody, NoBody, NoParams, PathId, QueryParams,
};
use crate::idempotency::{self, Created};
use crate::routes::metadata;
use crate::state::AppState;
use listbackup_domain::WebhookId;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhook {
    /// `https://…` (signed POSTs), or `mailto:address` (e-mail through the configured SMTP server).
    pub url: String,
    /// At least one of `job.failed`, `job.partial`, `job.succeeded`, `connection.reauth_required`,
    /// `backup.corrupted`.
    #[schema(value_type = Vec<NotificationType>)]
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// `null` for a field that was sent as `null`, as opposed to left out.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateWebhook {
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<NotificationType>>)]
    pub events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

/// A webhook with its signing secret: the answer of its creation and of a rotation, the only times the
/// secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: the HMAC-SHA256 key of the `Webhook-Signature` header. Shown once; store it now.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// The queued test delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    /// Follow it in `GET /webhooks/{id}/deliveries`.
    pub delivery_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn target(state: &AppState, raw: &str, errors: &mut Vec<FieldError>) -> Option<WebhookTarget> {
    WebhookTarget::parse(raw, state.webhooks.policy())
        .map_err(|m| errors.push(FieldError::new("url", m)))
        .ok()
}

fn subscriptions(raw: &[String], errors: &mut Vec<FieldError>) -> Option<Subscriptions> {
    let mut types = Vec::with_capacity(raw.len());
    for (index, name) in raw.iter().enumerate() {
        match NotificationType::parse(name) {
            Ok(kind) => types.push(kind),
            Err(message) => errors.push(FieldError::new(format!("events[{index}]"), message)),
        }
    }
    if types.len() < raw.len() {
        return None;
    }
    Subscriptions::new(types)
        .map_err(|m| errors.push(FieldError::new("events", m)))
        .ok()
}

fn description(raw: &str, errors: &mut Vec<FieldError>) -> Option<Description> {
    Description::parse(raw)
        .map_err(|m| errors.push(FieldError::new("description", m)))
        .ok()
}

/// Creates a webhook. The answer holds its signing secret, shown this once (a replay of the same
/// `Idempotency-Key` answers without it).
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), request_body = CreateWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response, without the secret")),
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)))]
#[post("/webhooks")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let mut errors = Vec::new();
    let target = target(&state, &body.url, &mut errors);
    let events = subscriptions(&body.events, &mut errors);
    let description = body
        .description
        .as_deref()
        .and_then(|d| description(d, &mut errors));
    let (Some(target), Some(events)) = (target, events) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    idempotency::create_once(
        &state.db,
        &req,
        &principal.account_id,
        "/webhooks",
        || async {
            let webhook_id = WebhookId::new();
            let created = state
                .webhooks
                .create(
                    &metadata(&req, &principal),
                    &webhook_id,
                    target,
                    events,
                    description,
                )
                .await?;
            let view = read_back::<WebhookView>(
                &state,
                &principal.account_id,
                webhook_id,
                created.committed.version,
            )
            .await?
            .ok_or_else(|| ApiError::from_unexpected("a created webhook is missing"))?;
            Ok(Created::new(webhook_id, view.version, &view)?
                .with_shown_once("secret", created.secret.expose().to_owned()))
        },
    )
    .await
}

/// The account's webhooks, newest first. Never their secrets.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = WebhookList), (status = 400, body = crate::error::Problem)))]
#[get("/webhooks")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let mut errors = Vec::new();
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let client = state.db.get().await?;
    let page = read::list(&client, &principal.account_id, &page).await?;
    Ok(HttpResponse::Ok().json(WebhookList {
        webhooks: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One webhook (never its secret).
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = WebhookView, headers(("ETag" = String))),
              (status = 404, body = crate::error::Problem)))]
#[get("/webhooks/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<WebhookId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let id = path.get()?;
    let client = state.db.get().await?;
    let view = read::get(&client, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Webhook))?;
    Ok(with_etag(&view, view.version))
}

/// Changes the URL, the event types and/or the description. `If-Match` makes it conditional.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), request_body = UpdateWebhook,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = WebhookView), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 412, body = crate::error::Problem)))]
#[put("/webhooks/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<WebhookId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    if body.url.is_none() && body.events.is_none() && body.description.is_none() {
        return Err(ApiError::bad_request(
            "send `url`, `events`, `description`, or several",
        ));
    }
    let mut errors = Vec::new();
    let target = body
        .url
        .as_deref()
        .and_then(|u| target(&state, u, &mut errors));
    let events = body
        .events
        .as_deref()
        .and_then(|e| subscriptions(e, &mut errors));
    let description = body
        .description
        .map(|d| d.as_deref().and_then(|d| description(d, &mut errors)));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let committed = state
        .webhooks
        .update(
            &metadata(&req, &principal),
            &id,
            expected,
            target,
            events,
            description,
        )
        .await?;
    let view = read_back::<WebhookView>(&state, &principal.account_id, id, committed.version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Webhook))?;
    Ok(with_etag(&view, view.version))
}

/// Deletes the webhook and destroys its secret; deliveries still queued for it are given up.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 412, body = crate::error::Problem)))]
#[delete("/webhooks/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<WebhookId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let committed = state
        .webhooks
        .delete(&metadata(&req, &principal), &id, expected)
        .await?;
    wait_for::<WebhookView>(&state, id, committed.version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the signing secret; the answer shows the new one, this once. The old one stops signing at once.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = WebhookWithSecret), (status = 404, body = crate::error::Problem),
              (status = 412, body = crate::error::Problem)))]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<WebhookId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let rotated = state
        .webhooks
        .rotate_secret(&metadata(&req, &principal), &id, expected)
        .await?;
    let webhook =
        read_back::<WebhookView>(&state, &principal.account_id, id, rotated.committed.version)
            .await?
            .ok_or_else(|| ApiError::not_found(ResourceKind::Webhook))?;
    let version = webhook.version;
    Ok(with_etag(
        &WebhookWithSecret {
            webhook,
            secret: rotated.secret.expose().to_owned(),
        },
        version,
    ))
}

/// Queues a `ping` notification to the webhook, delivered (and retried) like any other.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 202, body = TestQueued), (status = 404, body = crate::error::Problem)))]
#[post("/webhooks/{id}/test")]
pub async fn test(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<WebhookId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let delivery_id = state
        .webhooks
        .send_test(&metadata(&req, &principal), &id, &state.db, Utc::now())
        .await?;
    Ok(HttpResponse::Accepted().json(TestQueued {
        delivery_id: delivery_id.to_string(),
    }))
}

/// The webhook's deliveries, newest first, each with every attempt (status code, duration, error, next
/// attempt).
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path), PageParams),
    responses((status = 200, body = DeliveryList), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/webhooks/{id}/deliveries")]
pub async fn deliveries(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<WebhookId>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let id = path.get()?;
    let mut errors = Vec::new();
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let client = state.db.get().await?;
    let page = read::deliveries(&client, &principal.account_id, id, &page)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Webhook))?;
    Ok(HttpResponse::Ok().json(DeliveryList {
        deliveries: page.items,
        next_cursor: page.next_cursor,
    }))
}
