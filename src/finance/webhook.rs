//! The one way tally calls out: the webhook every event goes to (budget
//! alerts, low-balance alerts, `invoice.finalized`). One client with one
//! timeout, and one rule for delivery: a 2xx answer delivers an event;
//! anything else (a refusal, no answer) is logged and the event stays
//! undelivered for the next check, which sends it again.

use std::time::Duration;

use serde::Serialize;

/// How long the receiver has to answer one event.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook events are sent to.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
}

impl Webhook {
    pub fn new(url: &str) -> Result<Webhook, reqwest::Error> {
        Ok(Webhook {
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            url: url.to_owned(),
        })
    }

    /// POST one event: whether the receiver took it.
    pub async fn post(&self, event: &impl Serialize) -> bool {
        match self.client.post(&self.url).json(event).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(status = %r.status(), "the webhook refused an event; will retry");
                false
            }
            Err(e) => {
                tracing::warn!("the webhook is unreachable ({e}); will retry");
                false
            }
        }
    }
}
