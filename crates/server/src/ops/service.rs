//! The service side: service keys (made, listed and revoked by operators), who a token belongs
//! to (`verify`), and the short-lived tokens the plugin hands to a service.
//!
//! | use case | doors |
//! |---|---|
//! | [`authenticate`] | the service API's extractor (every `/api/v1/service/…` request) |
//! | [`verify`] | service API `POST /service/verify` |
//! | [`service_token`] | plugin API `POST /auth/service-token` |
//! | [`create_key`], [`revoke_key`], [`list_keys`] | CLI `service-keys …`, console, admin API |

use std::sync::Arc;

use api_types::{User as ApiUser, VerifyResponse};

use super::{Conflict, OpError, Operator, Service, User};
use crate::{
    admin::log,
    auth::{service_keys, tokens},
    AppState,
};

/// The live service key a request presents, or 401.
pub async fn authenticate(state: &AppState, presented: &str) -> Result<Service, OpError> {
    let key = service_keys::authenticate(&state.db, presented).await?.ok_or_else(|| {
        OpError::Unauthorized(
            "Send a live service key: Authorization: Bearer mck_… (mascot-server service-keys add).".into(),
        )
    })?;
    Ok(Service { key_id: key.id, name: key.name, max_credits_per_day: key.max_credits_per_day })
}

/// Who a token a plugin sent to the service belongs to (RFC 7662's introspection, in JSON).
/// Anything but a live, unrestricted plugin token or a live service token is `{active: false}`.
pub async fn verify(state: &AppState, _service: &Service, token: &str) -> Result<VerifyResponse, OpError> {
    let token = token.trim();
    if token.len() > 200 {
        return Ok(VerifyResponse::inactive());
    }
    if token.starts_with(tokens::SERVICE_PREFIX) {
        return Ok(match tokens::service_token_owner(&state.db, token).await? {
            Some((id, email, expires_at)) => VerifyResponse {
                active: true,
                user: Some(ApiUser { id, email }),
                password_change_required: Some(false),
                exp: Some(expires_at / 1000),
            },
            None => VerifyResponse::inactive(),
        });
    }
    Ok(match tokens::authenticate(&state.db, token).await? {
        // A one-time password's token may only change that password: no service work with it.
        Some(owner) if !owner.restricted => VerifyResponse {
            active: true,
            user: Some(ApiUser { id: owner.user_id, email: owner.email }),
            password_change_required: Some(false),
            exp: Some(owner.expires_at / 1000),
        },
        _ => VerifyResponse::inactive(),
    })
}

/// A token for the plugin to send to a service instead of its own (10 minutes, verify only).
pub async fn service_token(state: &AppState, user: &User) -> Result<(String, i64), OpError> {
    if let Err(wait) = state.limits.service_tokens.check(&user.id) {
        return Err(OpError::rate_limited(format!("Too many service tokens. Try again in {wait} seconds."), wait));
    }
    Ok(tokens::issue_for_service(&state.db, &user.id).await?)
}

/// Makes a key; the key in clear is in the answer only. Recorded in the audit trail with it.
pub async fn create_key(
    state: &AppState,
    op: &Operator,
    name: &str,
    max_credits_per_day: Option<i64>,
) -> Result<(service_keys::KeyInfo, String), OpError> {
    let audit = log::Entry {
        actor: op.actor.clone(),
        via: op.via,
        action: "service_keys.add",
        target: Some(name.trim().to_string()),
        detail: max_credits_per_day.map(|n| format!("at most {n} credits a day")),
    };
    let checked = service_keys::check_name(name).map_err(OpError::Invalid).and_then(|name| match max_credits_per_day {
        Some(n) if !(1..=crate::ledger::input::MAX_AMOUNT * 1000).contains(&n) => {
            Err(OpError::Invalid("max_credits_per_day must be a whole number of credits, at least 1.".into()))
        }
        _ => Ok(name),
    });
    let name = match checked {
        Ok(n) => n,
        Err(e) => {
            log::record_refusal(&state.db, &audit, &format!("failed: {e}")).await;
            return Err(e);
        }
    };
    let (name_, audit_, by) = (name.clone(), Arc::new(audit.clone()), op.actor.clone());
    let made = state
        .db
        .write(None, move |uow| {
            let (name, audit, by) = (name_.clone(), audit_.clone(), by.clone());
            Box::pin(async move {
                let Some(made) = service_keys::create_in(uow, &name, max_credits_per_day, &by).await? else {
                    return Err(OpError::Conflict(Conflict::NameTaken(format!(
                        "A live service key is already named {name}: revoke it first, or choose another name."
                    ))));
                };
                log::record_in(uow, &audit, "ok").await?;
                Ok(made)
            })
        })
        .await;
    match &made {
        Ok((info, _)) => tracing::info!(name = %info.name, key_id = %info.id, by = %op.actor, "service key made"),
        Err(e) => log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await,
    }
    made
}

/// Revokes the live key named `name`: refused on the next request, on every replica.
pub async fn revoke_key(state: &AppState, op: &Operator, name: &str) -> Result<service_keys::KeyInfo, OpError> {
    let audit = log::Entry {
        actor: op.actor.clone(),
        via: op.via,
        action: "service_keys.revoke",
        target: Some(name.trim().to_string()),
        detail: None,
    };
    let (name_, audit_) = (name.trim().to_string(), Arc::new(audit.clone()));
    let revoked = state
        .db
        .write(None, move |uow| {
            let (name, audit) = (name_.clone(), audit_.clone());
            Box::pin(async move {
                let Some(key) = service_keys::revoke_in(uow, &name).await? else {
                    return Err(OpError::not_found(format!("There is no live service key named {name}.")));
                };
                log::record_in(uow, &audit, "ok").await?;
                Ok(key)
            })
        })
        .await;
    match &revoked {
        Ok(key) => {
            // For a server on the same SQLite file (this may be the CLI): its cached keys are
            // read under the old stamp, so its next request reads the key again.
            state.db.bump_revocation_stamp();
            tracing::info!(name = %key.name, key_id = %key.id, by = %op.actor, "service key revoked")
        }
        Err(e) => log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await,
    }
    revoked
}

/// Every key (never the key itself).
pub async fn list_keys(state: &AppState) -> Result<Vec<service_keys::KeyInfo>, OpError> {
    Ok(service_keys::list(&state.db).await?)
}
