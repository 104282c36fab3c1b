//! Signed webhook delivery, as Stripe does it: each event to each endpoint in its own task
//! (concurrent, in any order), `Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "t.body")>`,
//! a 2xx within 10 s counts, anything else is retried on the back-off schedule with the same event.

use std::{sync::atomic::Ordering, time::Duration};

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::Value;
use sha2::Sha256;

use crate::{objects::now, DeliveryRecord, StripeSim, WebhookEndpoint};

/// A full `Stripe-Signature` header value for `payload` signed with `secret` at `timestamp`.
pub fn sign_payload(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts delivering `events` to every registered endpoint, honouring the test switches.
pub fn dispatch(sim: &StripeSim, events: Vec<Value>) {
    for event in events {
        let (endpoints, mode) = {
            let state = sim.lock();
            (state.endpoints.clone(), state.delivery.clone())
        };
        for endpoint in endpoints {
            for _copy in 0..=mode.duplicates {
                let record = |dropped: bool| DeliveryRecord {
                    event_id: event["id"].as_str().unwrap_or_default().into(),
                    event_type: event["type"].as_str().unwrap_or_default().into(),
                    endpoint_url: endpoint.url.clone(),
                    attempt: 0,
                    status_code: None,
                    ok: false,
                    dropped,
                };
                if mode.drop_all {
                    sim.lock().deliveries.push(record(true));
                    continue;
                }
                {
                    let mut state = sim.lock();
                    if state.delivery.drop_next > 0 {
                        state.delivery.drop_next -= 1;
                        state.deliveries.push(record(true));
                        continue;
                    }
                }
                sim.0.pending.fetch_add(1, Ordering::SeqCst);
                let (sim, endpoint, event, mode) = (sim.clone(), endpoint.clone(), event.clone(), mode.clone());
                tokio::spawn(async move {
                    let mut wait = mode.delay;
                    if mode.reorder {
                        wait += Duration::from_millis(rand::thread_rng().gen_range(0..300));
                    }
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    deliver(&sim, &endpoint, &event, mode.fail_first_attempts).await;
                    sim.0.pending.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
}

async fn deliver(sim: &StripeSim, endpoint: &WebhookEndpoint, event: &Value, fail_first: u32) {
    let body = event.to_string();
    let schedule = sim.0.config.retry_schedule.clone();
    for attempt in 0..=schedule.len() {
        if attempt > 0 {
            tokio::time::sleep(schedule[attempt - 1]).await;
        }
        let (status, ok) = if (attempt as u32) < fail_first {
            (Some(500), false)
        } else {
            let sent = sim
                .0
                .http
                .post(&endpoint.url)
                .header("content-type", "application/json; charset=utf-8")
                .header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
                .header("stripe-signature", sign_payload(&endpoint.secret, now(), body.as_bytes()))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(res) => (Some(res.status().as_u16()), res.status().is_success()),
                Err(_) => (None, false),
            }
        };
        sim.lock().deliveries.push(DeliveryRecord {
            event_id: event["id"].as_str().unwrap_or_default().into(),
            event_type: event["type"].as_str().unwrap_or_default().into(),
            endpoint_url: endpoint.url.clone(),
            attempt: attempt as u32 + 1,
            status_code: status,
            ok,
            dropped: false,
        });
        if ok || *sim.0.stop.borrow() {
            return;
        }
    }
    tracing::warn!(event_id = %event["id"], url = %endpoint.url, "webhook delivery gave up after all retries");
}
