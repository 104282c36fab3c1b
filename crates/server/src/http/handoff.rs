//! Browser sign-in for the plugin: the API the plugin calls (`/api/v1/auth/handoff…`) and the
//! page the system browser opens (`/account/sign-in`). See `auth::handoff` for the protocol.

use api_types::{codes, ErrorEnvelope, HandoffPoll, HandoffStart, HandoffStatus, User, HANDOFF_KEY_HEADER};
use askama::Template;
use axum::{
    extract::{rejection::FormRejection, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    Form, Json,
};
use serde::Deserialize;

use super::{
    billing::WaitQuery,
    extract::{ApiQuery, ClientAddr, PathId},
    html,
};
use crate::{
    auth::{
        accounts::{self, NewPasswordKind},
        devices,
        handoff::{self, Handoff},
        password::PasswordError,
        validate_password,
    },
    db::{now_ms, rfc3339_ms},
    error::{ApiError, ApiResult},
    mail::Mail,
    ops::{
        self,
        accounts::{Attempt, Door, SignedIn},
    },
    AppState,
};

/// Start signing in through the browser (public).
#[utoipa::path(post, path = "/api/v1/auth/handoff", tag = "auth",
    responses(
        (status = 201, description = "Open `url` in the system browser and show `user_code`; then poll", body = HandoffStart),
        (status = 429, description = "Too many sign-ins started from this address; see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
) -> ApiResult<(StatusCode, Json<HandoffStart>)> {
    let created = ops::accounts::start_handoff(&state, &client).await?;
    let url = format!("{}/account/sign-in?secret={}", state.config.public_base(), created.write_secret);
    Ok((
        StatusCode::CREATED,
        Json(HandoffStart {
            handoff_id: created.id,
            read_key: created.read_key,
            user_code: created.user_code,
            url,
            expires_at: rfc3339_ms(created.expires_at),
        }),
    ))
}

/// Wait for the browser side (public; the read key goes in the `X-Handoff-Key` header).
#[utoipa::path(get, path = "/api/v1/auth/handoff/{handoff_id}", tag = "auth",
    params(("handoff_id" = String, Path, description = "From `POST /api/v1/auth/handoff`"),
        ("X-Handoff-Key" = String, Header, description = "The handoff's `read_key`"), WaitQuery),
    responses(
        (status = 200, description = "`pending`, or `complete` with a new token (given once)", body = HandoffPoll),
        (status = 400, description = "Unreadable query (wait must be a whole number)", body = ErrorEnvelope),
        (status = 404, description = "`handoff_not_found`: unknown, expired, already read, or a wrong key", body = ErrorEnvelope),
        (status = 422, description = "wait above 30", body = ErrorEnvelope),
    ))]
pub async fn poll(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<HandoffPoll>> {
    // No key finds nothing (the same 404), after `wait` is checked as for any poll.
    let key = headers.get(HANDOFF_KEY_HEADER).and_then(|v| v.to_str().ok()).map_or("", str::trim);
    Ok(Json(match ops::accounts::wait_for_handoff(&state, &id, key, q.wait.unwrap_or(0)).await? {
        Some(done) => HandoffPoll {
            status: HandoffStatus::Complete,
            token: Some(done.token),
            user: Some(User { id: done.user_id, email: done.email }),
            device_token: Some(done.device_token),
        },
        None => HandoffPoll { status: HandoffStatus::Pending, token: None, user: None, device_token: None },
    }))
}

// ---- the page ----

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    secret: &'a str,
    csrf: &'a str,
    asked: String,
    different_network: bool,
    code: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    /// The email is under attack and its owner was mailed a one-time sign-in code: the page asks
    /// for it (kept when the password was wrong).
    sign_in_code: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signin_confirm.html")]
struct ConfirmPage<'a> {
    secret: &'a str,
    csrf: &'a str,
    /// The account shown: the confirm is bound to it.
    account: &'a str,
    email: &'a str,
    asked: String,
    different_network: bool,
}

#[derive(Template)]
#[template(path = "signin_change.html")]
struct ChangePage<'a> {
    secret: &'a str,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageForm {
    secret: String,
    csrf: String,
    step: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
    /// The one-time code mailed while the email is under attack (`mcl_…`), when the page asked.
    #[serde(default)]
    sign_in_code: String,
    /// On the confirm step: the account the page showed.
    #[serde(default)]
    account: String,
}

/// The cookie that keeps this browser's device token (the login throttle's "device cookie").
const DEVICE_COOKIE: &str = "mascot_device";

fn link_unusable() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "This sign-in link no longer works",
        "Sign-in links work once, for 10 minutes. Go back to the Mascot plugin in Figma and choose “Sign in with your browser” again.",
    )
}

fn ago(created_at: i64) -> String {
    let minutes = (now_ms() - created_at).max(0) / 60_000;
    match minutes {
        0 => "less than a minute ago".to_string(),
        1 => "1 minute ago".to_string(),
        n => format!("{n} minutes ago"),
    }
}

/// What to render, with the CSRF cookie when the browser has none yet.
struct Pages<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    secret: &'a str,
    client: &'a str,
}

impl Pages<'_> {
    fn csrf(&self) -> (String, Option<HeaderValue>) {
        html::csrf_token(self.headers, self.state.config.cookies_secure())
    }

    fn sign_in(&self, h: &Handoff, status: StatusCode, code: &str, email: &str, error: Option<&str>) -> Response {
        self.sign_in_asking(h, status, code, email, error, None)
    }

    /// The sign-in form, with the field for a mailed sign-in code when `sign_in_code` is set.
    fn sign_in_asking(
        &self,
        h: &Handoff,
        status: StatusCode,
        code: &str,
        email: &str,
        error: Option<&str>,
        sign_in_code: Option<&str>,
    ) -> Response {
        let (csrf, cookie) = self.csrf();
        let page = SignInPage {
            secret: self.secret,
            csrf: &csrf,
            asked: ago(h.created_at),
            different_network: h.created_address != self.client,
            code,
            email,
            error,
            sign_in_code,
        };
        html::render_with_cookie(status, &page, cookie)
    }

    fn confirm(&self, h: &Handoff, account: &str, email: &str) -> Response {
        let (csrf, cookie) = self.csrf();
        let page = ConfirmPage {
            secret: self.secret,
            csrf: &csrf,
            account,
            email,
            asked: ago(h.created_at),
            different_network: h.created_address != self.client,
        };
        html::render_with_cookie(StatusCode::OK, &page, cookie)
    }

    fn change(&self, status: StatusCode, email: &str, error: Option<&str>) -> Response {
        let (csrf, cookie) = self.csrf();
        html::render_with_cookie(status, &ChangePage { secret: self.secret, csrf: &csrf, email, error }, cookie)
    }

    /// The step a handoff is at: sign in, change a one-time password, or confirm.
    async fn current(&self, h: &Handoff) -> Response {
        if h.confirmed_at.is_some() {
            return done();
        }
        let Some(user_id) = &h.user_id else { return self.sign_in(h, StatusCode::OK, "", "", None) };
        match accounts::find_by_id(&self.state.db, user_id).await {
            Ok(Some(account)) if h.must_change != 0 => self.change(StatusCode::OK, &account.email, None),
            Ok(Some(account)) => self.confirm(h, &account.id, &account.email),
            Ok(None) => self.sign_in(h, StatusCode::OK, "", "", None),
            Err(e) => unavailable(e),
        }
    }
}

fn done() -> Response {
    html::message(
        StatusCode::OK,
        "You can go back to Figma",
        "The Mascot plugin is signing in. You can close this tab.",
    )
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "browser sign-in page failed");
    html::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "Something went wrong on our side. Reload this page in a minute.",
    )
}

pub async fn page(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(secret) = q.secret.filter(|s| !s.chars().any(char::is_control)) else { return link_unusable() };
    let h = match handoff::by_secret(&state.db, &secret).await {
        Ok(Some(h)) => h,
        Ok(None) => return link_unusable(),
        Err(e) => return unavailable(e),
    };
    Pages { state: &state, headers: &headers, secret: &secret, client: &client }.current(&h).await
}

pub async fn submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<PageForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return html::message(
            StatusCode::BAD_REQUEST,
            "Please try again",
            "This form was incomplete. Reload the page.",
        );
    };
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &form.csrf) {
        tracing::warn!(client = %client, ?refusal, "browser sign-in form refused (CSRF)");
        return html::refused(refusal);
    }
    let h = match handoff::by_secret(&state.db, &form.secret).await {
        Ok(Some(h)) => h,
        Ok(None) => return link_unusable(),
        Err(e) => return unavailable(e),
    };
    let pages = Pages { state: &state, headers: &headers, secret: &form.secret, client: &client };
    match form.step.as_str() {
        "sign_in" | "sign_up" => sign_in_step(&pages, &h, &form).await,
        "change_password" => change_step(&pages, &h, &form).await,
        // Bound to the account the page showed: if someone else signed in on this link since, the
        // confirm does nothing and the page shows who is signed in now.
        "confirm" => match handoff::confirm(&state.db, &h.id, &form.account).await {
            Ok(Some(user_id)) => {
                tracing::info!(handoff_id = %h.id, user_id = %user_id, client = %client, "browser sign-in confirmed");
                notify_by_mail(&state, &user_id, &client).await;
                html::message(
                    StatusCode::OK,
                    "You can go back to Figma",
                    "The Mascot plugin is now signed in to your account. You can close this tab.",
                )
            }
            Ok(None) => pages.current(&h).await,
            Err(e) => unavailable(e),
        },
        "cancel" => match handoff::cancel(&state.db, &h.id).await {
            Ok(()) => {
                tracing::warn!(handoff_id = %h.id, client = %client, "browser sign-in cancelled on the page");
                html::message(
                    StatusCode::OK,
                    "Sign-in cancelled",
                    "Nothing was signed in. If someone sent you this link, your account is safe: do not share codes from the Mascot plugin.",
                )
            }
            Err(e) => unavailable(e),
        },
        _ => pages.current(&h).await,
    }
}

async fn sign_in_step(pages: &Pages<'_>, h: &Handoff, form: &PageForm) -> Response {
    let state = pages.state;
    if !handoff::code_matches(h, &form.code) {
        return match handoff::wrong_code(&state.db, &h.id).await {
            Ok(true) => {
                tracing::warn!(handoff_id = %h.id, client = %pages.client, "browser sign-in: wrong code");
                pages.sign_in(
                    h,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "",
                    &form.email,
                    Some("That is not the code your plugin shows. Type the code from the Mascot plugin you opened."),
                )
            }
            Ok(false) => {
                tracing::warn!(handoff_id = %h.id, client = %pages.client, "browser sign-in: too many wrong codes, cancelled");
                html::message(
                    StatusCode::NOT_FOUND,
                    "This sign-in was cancelled",
                    "Too many wrong codes. Go back to the Mascot plugin in Figma and start again.",
                )
            }
            Err(e) => unavailable(e),
        };
    }
    let device = html::cookie(pages.headers, DEVICE_COOKIE);
    let result = if form.step == "sign_up" {
        ops::accounts::create_account(state, pages.client, &form.email, form.password.clone())
            .await
            .map(|account| SignedIn { account, must_change: false, known_device: false })
    } else {
        let attempt = Attempt {
            client: pages.client,
            email: &form.email,
            password: form.password.clone(),
            device_token: device.as_deref(),
            door: Door::Page,
            code: None,
            sign_in_code: Some(form.sign_in_code.trim()).filter(|c| !c.is_empty()),
        };
        ops::accounts::check_password(state, attempt).await
    };
    let signed = match result {
        Ok(s) => s,
        Err(e) => {
            let e = ApiError::from(e);
            // Once a code was mailed, the page keeps asking for it (and keeps what was typed).
            let typed = form.sign_in_code.trim();
            let ask = (e.code == codes::SIGN_IN_CODE_SENT || !typed.is_empty()).then_some(typed);
            let message = if e.code == codes::SIGN_IN_CODE_SENT {
                format!(
                    "Too many failed sign-ins for this email from elsewhere, so new devices wait {} seconds. If the email is yours, a sign-in code is in its mailbox (sent now or in the last minutes): type it below with your password to sign in now.",
                    e.retry_after.unwrap_or(0)
                )
            } else {
                e.message.clone()
            };
            let mut response = pages.sign_in_asking(h, e.status, &form.code, &form.email, Some(&message), ask);
            if let Some(wait) = e.retry_after.and_then(|w| HeaderValue::from_str(&w.to_string()).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, wait);
            }
            return response;
        }
    };
    match handoff::signed_in(&state.db, &h.id, &signed.account.id, signed.must_change).await {
        Ok(true) => {}
        Ok(false) => return link_unusable(),
        Err(e) => return unavailable(e),
    }
    tracing::info!(handoff_id = %h.id, user_id = %signed.account.id, client = %pages.client, created = form.step == "sign_up", "browser sign-in: password accepted, waiting for confirmation");
    let mut response = if signed.must_change {
        pages.change(StatusCode::OK, &signed.account.email, None)
    } else {
        pages.confirm(h, &signed.account.id, &signed.account.email)
    };
    // This browser is a known device of the account from now on.
    if let Ok(token) = devices::remember(&state.db, &signed.account.id, device.as_deref()).await {
        let cookie = format!(
            "{DEVICE_COOKIE}={token}; Path=/account; HttpOnly; SameSite=Strict; Max-Age=31536000{}",
            if state.config.cookies_secure() { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn change_step(pages: &Pages<'_>, h: &Handoff, form: &PageForm) -> Response {
    let state = pages.state;
    let (Some(user_id), true) = (&h.user_id, h.must_change != 0) else { return pages.current(h).await };
    let account = match accounts::find_by_id(&state.db, user_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return link_unusable(),
        Err(e) => return unavailable(e),
    };
    if let Err(problem) = validate_password(&form.new_password) {
        return pages.change(StatusCode::UNPROCESSABLE_ENTITY, &account.email, Some(&problem));
    }
    if form.new_password != form.new_password_confirm {
        return pages.change(
            StatusCode::UNPROCESSABLE_ENTITY,
            &account.email,
            Some("The two passwords differ. Type the same new password twice."),
        );
    }
    let hash = match state.passwords.hash_for(&[pages.client], form.new_password.clone()).await {
        Ok(h) => h,
        Err(PasswordError::Busy) => {
            return pages.change(
                StatusCode::SERVICE_UNAVAILABLE,
                &account.email,
                Some("Too many sign-ins at once. Send the form again in a moment."),
            )
        }
        Err(PasswordError::Failed(e)) => return unavailable(e),
    };
    match accounts::replace_password(&state.db, user_id, &hash, NewPasswordKind::Chosen, None).await {
        Ok(Some(signed_out)) => {
            tracing::info!(user_id = %user_id, client = %pages.client, signed_out, "password changed on the browser sign-in page (one-time password replaced)");
        }
        Ok(None) => return link_unusable(),
        Err(e) => return unavailable(e),
    }
    match handoff::password_changed(&state.db, &h.id, user_id).await {
        Ok(true) => pages.confirm(h, &account.id, &account.email),
        Ok(false) => link_unusable(),
        Err(e) => unavailable(e),
    }
}

/// With mail configured, the account hears of every browser sign-in.
async fn notify_by_mail(state: &AppState, user_id: &str, client: &str) {
    if !state.mailer.enabled() {
        return;
    }
    let Ok(Some(account)) = accounts::find_by_id(&state.db, user_id).await else { return };
    let body = format!(
        "Hello,\n\nThe Mascot plugin in Figma was just signed in to your account {email} through a browser \
         (network {client}).\n\nIf this was you, there is nothing to do. If it was not, reset your password \
         from the plugin (Forgot password?) right away: that signs out every device.\n\n— Mascot\n",
        email = account.email,
    );
    state.mailer.send(Mail {
        to: account.email,
        subject: "New sign-in to Mascot".into(),
        body,
        kind: "browser_sign_in",
        user_id: user_id.to_string(),
    });
}
