//! The webhook sink (`type: webhook`): each batch POSTed as JSON,
//! `{"samples": [{"uri", "ts", "kind", "value"}, …]}` (`ts` in µs since the Unix
//! epoch, `value` a number or a string), to an `http://` or `https://` URL.
//!
//! **Owns:** the request body. A 2xx answer delivers the batch; 5xx, 429, 408 and
//! connection errors are retried; any other 4xx refuses it for good.

use super::http::{Client, HttpUrl};
use super::{BoxFuture, Sink, SinkError, sample_json};
use crate::model::Sample;

/// POSTs batches to a URL.
pub struct WebhookSink {
    url: Result<HttpUrl, String>,
    client: Client,
}

impl WebhookSink {
    /// A sink posting to `url` (checked when the configuration was read),
    /// trusting the CA certificates of `ca` too for `https://`.
    pub fn new(url: &str, ca: Option<std::path::PathBuf>) -> WebhookSink {
        WebhookSink {
            url: HttpUrl::parse(url),
            client: Client::with_ca(ca),
        }
    }

    fn url(&self) -> Result<HttpUrl, SinkError> {
        self.url.clone().map_err(SinkError::Permanent)
    }
}

/// The body of one batch.
pub fn body(batch: &[Sample]) -> Vec<u8> {
    let samples: Vec<serde_json::Value> = batch.iter().map(sample_json).collect();
    serde_json::to_vec(&serde_json::json!({ "samples": samples })).unwrap_or_default()
}

impl Sink for WebhookSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        // An empty batch: the endpoint must answer it with a 2xx.
        Box::pin(async move {
            let url = self.url()?;
            self.client.post(&url, "application/json", body(&[])).await
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let url = self.url()?;
            self.client
                .post(&url, "application/json", body(batch))
                .await
        })
    }
}
