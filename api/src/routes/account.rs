//! The caller's account as a whole: its erasure (issue 13 §2).

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::metadata;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoParams, QueryParams};
use crate::state::AppState;

/// The explicit confirmation of an erasure.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseAccount {
    /// The account's id, typed out: erasing cannot be undone.
    pub confirm: Option<String>,
}

/// An erased account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountErasure {
    pub account_id: String,
    /// When the account was erased (the first erasure's time, when it was erased before).
    pub erased_at: DateTime<Utc>,
    /// Who erased it: `user:<sub>`.
    pub erased_by: String,
}

/// Erases the caller's account, for good: its backups' data key and its connections' credentials are
/// destroyed (the backups stay stored as ciphertext nobody can decrypt; the connections can no longer reach
/// their platforms), and `AccountErased` (who, when) is recorded on the stream `account/{accountId}`. The
/// event log is left whole: every stream's hash chain still verifies (`GET /audit/verify`). Afterwards the
/// account's backup downloads answer 410. Owners only; the body must confirm the account's id
/// (`{"confirm": "<accountId>"}`; anything else is a 400 naming `confirm`). Erasing again changes nothing
/// and answers the first erasure.
#[utoipa::path(tag = "account", security(("bearer" = [])), request_body = EraseAccount,
    responses((status = 200, body = AccountErasure), (status = 400, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)))]
#[post("/account/erase")]
pub async fn erase(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<EraseAccount>,
) -> Result<HttpResponse, ApiError> {
    principal.require_owner()?;
    match body.confirm.as_deref() {
        Some(confirm) if confirm == principal.account_id => {}
        Some(_) => {
            return Err(ApiError::field(
                "confirm",
                "must be this account's id, typed out to confirm the erasure",
            ))
        }
        None => {
            return Err(ApiError::field(
                "confirm",
                "is required: this account's id, typed out to confirm the erasure",
            ))
        }
    }
    let erasure = state.accounts.erase(&metadata(&req, &principal)).await?;
    Ok(HttpResponse::Ok().json(AccountErasure {
        account_id: principal.account_id.clone(),
        erased_at: erasure.at,
        erased_by: erasure.by,
    }))
}
