//! What every HTML page the backend serves shares (`../shared/notes/pages.md`): templates that
//! escape everything they print (askama, `templates/`), the security headers, the style sheet,
//! and the CSRF defence of state-changing forms.

use askama::Template;
use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use subtle::ConstantTimeEq;

/// A page that only says something.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders `page` with `status`; a template that fails to render is a 500 without details.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()),
            )
                .into_response()
        }
    }
}

/// [`render`], setting `cookie` (a form's new CSRF cookie, a session) when there is one.
pub fn render_with_cookie(status: StatusCode, page: &impl Template, cookie: Option<HeaderValue>) -> Response {
    let mut response = render(status, page);
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &Message { title, message })
}

/// The pages' style sheet, a file of its own so that the CSP needs no inline style.
const CSS: &str = include_str!("../../templates/pages.css");

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

/// The headers every HTML answer carries: no inline script or style, never framed, no referrer
/// (URLs carry one-time secrets), nothing cached.
pub async fn html_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html")) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        );
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The cookie of the double-submit CSRF token: a form carries the same value in a hidden field.
pub const CSRF_COOKIE: &str = "mascot_csrf";

/// The CSRF token a form should carry: the browser's existing one, or a new one with the
/// `Set-Cookie` that stores it. `secure` when the public base is https.
pub fn csrf_token(headers: &HeaderMap, secure: bool) -> (String, Option<HeaderValue>) {
    if let Some(existing) = cookie(headers, CSRF_COOKIE).filter(|v| v.len() == 43) {
        return (existing, None);
    }
    let token = crate::auth::secret::random_token();
    let cookie = format!(
        "{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400{}",
        if secure { "; Secure" } else { "" }
    );
    (token, HeaderValue::from_str(&cookie).ok())
}

/// Why a state-changing form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    CrossOrigin,
    BadToken,
}

/// A state-changing request from a page: same-origin by `Sec-Fetch-Site`, or by an `Origin`
/// equal to the public base, and a form token equal to the cookie's.
pub fn check_form(headers: &HeaderMap, public_base: &str, form_token: &str) -> Result<(), CsrfRefusal> {
    if !same_origin(headers, public_base) {
        return Err(CsrfRefusal::CrossOrigin);
    }
    let Some(cookie) = cookie(headers, CSRF_COOKIE) else { return Err(CsrfRefusal::BadToken) };
    if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(form_token.as_bytes())) {
        return Err(CsrfRefusal::BadToken);
    }
    Ok(())
}

/// Whether the browser says the request comes from this site. A browser sends `Sec-Fetch-Site`
/// (all current ones) or at least `Origin` on a POST; a request with neither is refused.
pub fn same_origin(headers: &HeaderMap, public_base: &str) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match get("sec-fetch-site") {
        Some(site) => site == "same-origin",
        None => get("origin").is_some_and(|o| o.trim_end_matches('/') == public_base.trim_end_matches('/')),
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Refusal page for a form that failed [`check_form`].
pub fn refused(refusal: CsrfRefusal) -> Response {
    let text = match refusal {
        CsrfRefusal::CrossOrigin => "This form must be sent from this site. Open the page again and retry.",
        CsrfRefusal::BadToken => "This form has expired. Open the page again and retry.",
    };
    message(StatusCode::FORBIDDEN, "Please try again", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forms_need_the_same_origin_and_the_cookie_token() {
        let base = "https://mascot.example.com";
        let ok = headers(&[("sec-fetch-site", "same-origin"), ("cookie", "a=b; mascot_csrf=tok")]);
        assert_eq!(check_form(&ok, base, "tok"), Ok(()));
        assert_eq!(check_form(&ok, base, "other"), Err(CsrfRefusal::BadToken));
        let cross = headers(&[("sec-fetch-site", "cross-site"), ("cookie", "mascot_csrf=tok")]);
        assert_eq!(check_form(&cross, base, "tok"), Err(CsrfRefusal::CrossOrigin));
        let origin = headers(&[("origin", "https://mascot.example.com"), ("cookie", "mascot_csrf=tok")]);
        assert_eq!(check_form(&origin, base, "tok"), Ok(()));
        let evil = headers(&[("origin", "https://evil.example"), ("cookie", "mascot_csrf=tok")]);
        assert_eq!(check_form(&evil, base, "tok"), Err(CsrfRefusal::CrossOrigin));
        let neither = headers(&[("cookie", "mascot_csrf=tok")]);
        assert_eq!(check_form(&neither, base, "tok"), Err(CsrfRefusal::CrossOrigin));
        let no_cookie = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(check_form(&no_cookie, base, ""), Err(CsrfRefusal::BadToken));
    }

    #[test]
    fn templates_escape_what_they_print() {
        let html = Message { title: "<script>alert(1)</script>", message: "a & \"b\"" }.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
    }
}
