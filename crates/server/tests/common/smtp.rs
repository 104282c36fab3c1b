//! A small SMTP server on 127.0.0.1 for the tests: it speaks enough of RFC 5321 for lettre
//! (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and keeps every message it receives.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::Mutex,
};

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-unstuffed).
    pub data: String,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read);
                    let _ = write.write_all(b"220 test-smtp ready\r\n").await;
                    let (mut from, mut to) = (String::new(), Vec::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-test-smtp\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") || upper.starts_with("RSET") {
                            b"250 ok\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().trim_matches(['<', '>']).to_string();
                            b"250 ok\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                            b"250 ok\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            }
                            store.lock().await.push(Received { from: from.clone(), to: std::mem::take(&mut to), data });
                            b"250 queued\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpServer { port, received }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub async fn received(&self) -> Vec<Received> {
        self.received.lock().await.clone()
    }

    /// The mails received so far whose subject is `subject`.
    pub async fn received_about(&self, subject: &str) -> Vec<Received> {
        let line = format!("Subject: {subject}");
        self.received.lock().await.iter().filter(|m| m.data.contains(&line)).cloned().collect()
    }

    /// Waits up to 10 s for the `n`-th mail (1-based) whose subject is `subject` (sign-up also
    /// mails "Confirm your email": tests about other mails skip it).
    pub async fn wait_about(&self, subject: &str, n: usize) -> Received {
        for _ in 0..200 {
            if let Some(m) = self.received_about(subject).await.get(n - 1) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail number {n} about {subject:?} within 10 s; got {:?}", self.received.lock().await.len());
    }

    /// Waits up to 10 s for the `n`-th mail (1-based) and returns it.
    pub async fn wait_for(&self, n: usize) -> Received {
        for _ in 0..200 {
            if let Some(m) = self.received.lock().await.get(n - 1) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail number {n} within 10 s; got {:?}", self.received.lock().await.len());
    }
}

/// The reset link in a mail (`…/account/reset?token=…`), with quoted-printable soft breaks undone.
pub fn link_in(mail: &Received, path: &str) -> String {
    let text = mail.data.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let start = text.find("http://127.0.0.1").filter(|i| text[*i..].contains(path)).expect("a link in the mail");
    let rest = &text[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].to_string()
}
