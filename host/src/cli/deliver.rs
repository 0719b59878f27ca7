//! A one-shot upload's delivery: with a server configured and no agent
//! running, `komlogd -u` sends the outbox itself before it exits, as the
//! original agent uploaded at once, and says plainly when it could only queue.

use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Agent;
use crate::config::Config;
use crate::session::{self, LinkConfig, Supplies};

/// How long a one-shot upload waits for the server (login and every answer).
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// What became of the outbox after a one-shot upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No server is configured: nothing is queued for one.
    Local,
    /// The server acknowledged everything queued (this sample and any earlier
    /// ones left by previous runs).
    Delivered {
        /// The server that acknowledged them (one of several `urls`).
        url: String,
        acked: u64,
        refused: u64,
        /// The server's reason for the last refusal.
        refusal: Option<String>,
    },
    /// Some samples are still queued; the next agent run (or upload) sends them.
    Queued { left: u64, reason: String },
}

/// Send the agent's outbox to the configured server within `within`.
pub fn deliver(config: &Config, agent: &Agent, within: Duration) -> Outcome {
    let Some(server) = &config.server else {
        return Outcome::Local;
    };
    let queued = |reason: String| {
        let left = agent
            .dispatcher
            .store()
            .outbox()
            .and_then(|o| o.depth())
            .unwrap_or(0);
        Outcome::Queued { left, reason }
    };
    let Some(username) = &config.username else {
        return queued("connected mode needs `- username:`".into());
    };
    let key = match crate::keys::load_or_create(&config.key_path()) {
        Ok(k) => k,
        Err(e) => return queued(format!("cannot read the agent's key: {e}")),
    };
    let outbox = match agent.dispatcher.store().outbox() {
        Ok(o) => o,
        Err(e) => return queued(format!("cannot open the outbox: {e}")),
    };
    let (_hooks_tx, hooks) = watch::channel(Vec::new());
    let link = LinkConfig {
        urls: server.urls.clone(),
        ca_file: server.ca_file.clone(),
        username: username.as_str().to_owned(),
        key: key.private,
        hooks,
        supplies: Supplies::new(),
        reply_timeout: within,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return queued(format!("cannot start the network runtime: {e}")),
    };
    let inbox = agent.dispatcher.inbox();
    let delivery = runtime.block_on(session::deliver(link, outbox, inbox, within));
    match delivery.error {
        None if delivery.left == 0 => Outcome::Delivered {
            url: delivery.url,
            acked: delivery.acked,
            refused: delivery.refused,
            refusal: delivery.refusal,
        },
        None => Outcome::Queued {
            left: delivery.left,
            reason: "samples were written while sending".into(),
        },
        Some(reason) => Outcome::Queued {
            left: delivery.left,
            reason,
        },
    }
}

/// Tell the user what became of the outbox (stdout for success, stderr
/// otherwise); a refusal is named.
pub fn report(outcome: &Outcome, config: &Config) {
    let configured = config
        .server
        .as_ref()
        .map_or_else(|| "the server".to_owned(), |s| s.describe());
    match outcome {
        Outcome::Local => {}
        Outcome::Delivered {
            url,
            acked,
            refused: 0,
            ..
        } => println!(
            "sent to {url}: {acked} sample{} acknowledged, outbox empty",
            plural(*acked)
        ),
        Outcome::Delivered {
            url,
            acked,
            refused,
            refusal,
        } => {
            println!(
                "sent to {url}: {acked} sample{} acknowledged, outbox empty",
                plural(*acked)
            );
            eprintln!(
                "komlogd: the server refused {refused} sample{}{}",
                plural(*refused),
                refusal
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        Outcome::Queued { left, reason } => eprintln!(
            "komlogd: not sent to {configured} ({reason}); stored and queued: {left} sample{} in the outbox, sent by the next agent run or upload",
            plural(*left)
        ),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
