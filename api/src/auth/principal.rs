use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;

use super::Authenticator;
use crate::error::{ApiError, ErrorCode};
use crate::rate_limit::RateLimiters;
use crate::state::AppState;

/// A role granted by the token's roles claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Manager,
    Viewer,
    Auditor,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Self::Owner),
            "manager" => Some(Self::Manager),
            "viewer" => Some(Self::Viewer),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Manager => "manager",
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
        }
    }
}

/// The authenticated caller: one account, one user, some roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: String,
    /// The token's `sub`.
    pub user_id: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// The `actor` recorded in event metadata.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user_id)
    }

    fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    /// Reading resources: every role may.
    pub fn require_read(&self) -> Result<(), ApiError> {
        if self.roles.is_empty() {
            return Err(ApiError::forbidden("the token grants no role"));
        }
        Ok(())
    }

    /// Changing resources: owner or manager.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.has_any(&[Role::Owner, Role::Manager]) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this requires the owner or manager role",
            ))
        }
    }

    /// Reading the event log: auditor or owner.
    /// The owner role: what only an account's owner may do (erasing the account).
    pub fn require_owner(&self) -> Result<(), ApiError> {
        if self.has_any(&[Role::Owner]) {
            Ok(())
        } else {
            Err(ApiError::forbidden("this requires the owner role"))
        }
    }

    pub fn require_audit(&self) -> Result<(), ApiError> {
        if self.has_any(&[Role::Owner, Role::Auditor]) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this requires the auditor or owner role",
            ))
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    /// Verifies `Authorization: Bearer <token>` with the app's [`Authenticator`] (registered as
    /// `web::Data<Authenticator>`).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Everything the future needs is taken out of the request now, so that it can be `'static`.
        let authenticator = req.app_data::<web::Data<Authenticator>>().cloned();
        let limiters = req.app_data::<web::Data<RateLimiters>>().cloned();
        let peer = limiters
            .as_ref()
            .and_then(|l| l.client_ip(req.peer_addr(), req.headers()));
        let token = bearer_token(req).map(str::to_owned);
        let erasure_check = changes_the_account(req)
            .then(|| req.app_data::<web::Data<AppState>>().cloned())
            .flatten();
        Box::pin(async move {
            let Some(authenticator) = authenticator else {
                // A wiring mistake, not the caller's: answer 500 and log it.
                return Err(ApiError::from_unexpected(
                    "Principal extractor used without web::Data<Authenticator> in the app",
                ));
            };
            let verified = match token {
                Ok(token) => authenticator.authenticate(&token).await,
                Err(err) => Err(err),
            };
            let verified = match (verified, &limiters) {
                (Ok(principal), Some(limiters)) => {
                    limiters.account_request(&principal.account_id)?;
                    Ok(principal)
                }
                (Err(err), Some(limiters)) if err.code == ErrorCode::Unauthorized => {
                    match peer.and_then(|ip| limiters.authentication_failed(ip)) {
                        Some(limited) => Err(limited),
                        None => Err(err),
                    }
                }
                (verified, _) => verified,
            }?;
            if let Some(state) = erasure_check {
                if let Some(at) = state
                    .accounts
                    .erased_before_change(&verified.account_id)
                    .await?
                {
                    return Err(ApiError::new(
                        ErrorCode::Gone,
                        format!(
                            "the account was erased at {}: it records no more changes (its history stays \
                             readable)",
                            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    ));
                }
            }
            Ok(verified)
        })
    }
}

/// Routes that change nothing of the account's data and stay open after its erasure: erasing again
/// (idempotent: it answers the first erasure) and verifying a backup (the ciphertext is evidence, and checking
/// it against its manifest needs no key).
const OPEN_AFTER_ERASURE: [&str; 2] = ["/account/erase", "/jobs/{id}/verify"];

/// Whether the request asks to change something (any method but GET, HEAD and OPTIONS): an erased account
/// may still read its history, but changes nothing more (issue 13 §2).
fn changes_the_account(req: &HttpRequest) -> bool {
    let method = req.method();
    let reads = method == actix_web::http::Method::GET
        || method == actix_web::http::Method::HEAD
        || method == actix_web::http::Method::OPTIONS;
    !reads
        && !req
            .match_pattern()
            .is_some_and(|pattern| OPEN_AFTER_ERASURE.contains(&pattern.as_str()))
}

/// The token of the request's one `Authorization: Bearer <token>` header.
fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values
        .next()
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    if values.next().is_some() {
        return Err(ApiError::unauthorized(
            "send exactly one Authorization header",
        ));
    }
    let malformed = || ApiError::unauthorized("the Authorization header must be `Bearer <token>`");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    // Authentication schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(token)
}
