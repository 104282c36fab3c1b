//! One attempt on the wire: the Standard Webhooks signature, and a POST over a connection made by
//! hand to an address [`guard::resolve`](super::guard::resolve) checked. No connection pool (each
//! attempt resolves and checks again), no proxy from the environment, redirects not followed
//! (a 3xx is a failure), a timeout around the whole attempt, and at most [`READ_LIMIT`] bytes of
//! the answer read.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_rustls::{
    rustls::{self, pki_types::ServerName},
    TlsConnector,
};

use super::guard::{self, Target};

/// The most of an answer's body read (kept only as an excerpt of a failure).
pub const READ_LIMIT: usize = 16 * 1024;
/// The excerpt of a failed answer stored with the delivery.
const EXCERPT_CHARS: usize = 200;

pub const USER_AGENT: &str = concat!("mascot-credits-webhooks/", env!("CARGO_PKG_VERSION"));

/// The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok().filter(|k| !k.is_empty())
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for each secret, space-separated (two
/// during a rotation). A secret that cannot be decoded signs nothing.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &str) -> String {
    let content = format!("{id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(|s| key_of(s))
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
            mac.update(content.as_bytes());
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new endpoint secret: `whsec_` + standard base64 of 32 random bytes.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when the answer had one.
    pub retry_after: Option<Duration>,
    /// The start of the body of a non-2xx answer (control characters removed).
    pub excerpt: String,
}

impl Answer {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The request of one attempt.
pub struct Outgoing<'a> {
    pub target: &'a Target,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Resolves the target again, checks every address, connects to a checked one and posts. The
/// caller bounds the whole of it with a timeout.
pub async fn post(out: Outgoing<'_>) -> Result<Answer, String> {
    let addrs = guard::resolve(out.target).await?;
    let tcp = connect(&addrs).await?;
    let mut request = Request::post(out.target.path_and_query())
        .header(hyper::header::HOST, out.target.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header(hyper::header::CONNECTION, "close");
    for (name, value) in &out.headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(Bytes::from(out.body))).map_err(|e| format!("bad request: {e}"))?;
    if out.target.https {
        let name = match &out.target.host {
            url::Host::Domain(d) => ServerName::try_from(d.clone()).map_err(|e| format!("bad TLS name: {e}"))?,
            url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(*ip).into()),
            url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(*ip).into()),
        };
        let tls = TlsConnector::from(tls_config()).connect(name, tcp).await.map_err(|e| format!("TLS failed: {e}"))?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}

/// The first address that accepts a connection, trying them in order.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Aborts the connection's task when the attempt ends (or is dropped by its timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP failed: {e}"))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut excerpt = Vec::new();
    if !(200..300).contains(&status) {
        let mut body = response.into_body();
        while excerpt.len() < READ_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = READ_LIMIT - excerpt.len();
                        excerpt.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
    }
    let excerpt: String =
        String::from_utf8_lossy(&excerpt).chars().filter(|c| !c.is_control()).take(EXCERPT_CHARS).collect();
    Ok(Answer { status, retry_after, excerpt })
}

/// TLS with the platform-independent Mozilla roots and the ring provider; HTTP/1.1 only.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' test suites.
    #[test]
    fn signs_like_the_specification() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let header = signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = signature_header(&[secret, &new_secret()], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert!(two.starts_with("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,"), "{two}");
        assert_eq!(signature_header(&["not-a-secret"], "m", 1, "{}"), "");
    }

    #[test]
    fn secrets_are_32_random_bytes_in_standard_base64() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let key = STANDARD.decode(a.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(key.len(), 32);
    }
}
