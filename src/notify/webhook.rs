//! Webhooks: a POST of the event's JSON, signed as the Standard Webhooks spec says
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`, keyed by the bytes of the `whsec_` secret), so receivers can verify it
//! with that spec's libraries. Any 2xx is delivered; anything else, or no answer within
//! `[notify] timeout_seconds`, is retried.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use super::Tried;
use crate::config::{Config, Webhook};
use crate::store::Delivery;

pub fn client(cfg: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(cfg.notify.timeout)
        .connect_timeout(cfg.notify.timeout)
        .user_agent(concat!("bulkload/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
pub fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

pub async fn send(
    _cfg: &Config,
    http: &reqwest::Client,
    hook: &Webhook,
    env: &str,
    d: &Delivery,
) -> Tried {
    let body = serde_json::to_vec(&super::event_json(env, d)).map_err(|e| e.to_string())?;
    let ts = chrono::Utc::now().timestamp();
    let sig = signature(&hook.secret.0, &d.msg_id, ts, &body);
    let resp = http
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "no answer within the timeout".to_string()
            } else {
                // reqwest's chain names the cause (connection refused, ...).
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    s.push_str(": ");
                    s.push_str(&c.to_string());
                    src = c.source();
                }
                s
            }
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signature_matches_the_spec_example() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
