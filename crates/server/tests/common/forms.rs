//! Driving the backend's HTML forms as a same-origin browser would: the page's CSRF cookie, its
//! hidden fields, and urlencoded posts.
#![allow(dead_code)]

use reqwest::{header::HeaderMap, StatusCode};

use super::TestApp;

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page as a browser got it.
pub struct Page {
    pub status: StatusCode,
    pub html: String,
    pub headers: HeaderMap,
    /// `mascot_csrf=…` when the page set it.
    pub csrf_cookie: Option<String>,
}

impl Page {
    /// The value of hidden/input field `name`.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start =
            self.html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {}", self.html)) + marker.len();
        self.html[start..].split('"').next().unwrap().to_string()
    }
}

pub async fn open(app: &TestApp, url: &str, extra: &[(&str, &str)]) -> Page {
    let mut req = app.client.get(url);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let csrf_cookie = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("mascot_csrf="))
        .map(|v| v.split(';').next().unwrap().to_string());
    Page { status, html: res.text().await.unwrap(), headers, csrf_cookie }
}

/// Posts `fields` to `path` from our own origin with `cookie`.
pub async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Page {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect();
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .header("sec-fetch-site", "same-origin");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.body(body.join("&")).send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    Page { status, html: res.text().await.unwrap(), headers, csrf_cookie: None }
}
