//! komlog-hub: a Komlog-compatible server.
//!
//! It speaks protocol v1 (crate `komlog-protocol`) to agents such as komlogd
//! 0.12.0 and this project's agent: the challenge login at `/login`, then one
//! websocket at `/` authenticated by the `kid` cookie, carrying the nine actions.
//!
//! * [`server`]: configuration, the HTTP routes, start and stop.
//! * [`auth`]: the `/login` handshake (challenges, single use, expiry).
//! * [`sessions`]: logins, live connections, hooks, notification fan-out, kicks.
//! * [`connection`]: one websocket: reading frames, writing replies.
//! * [`actions`]: what each action does, with the spec's status codes.
//! * [`admin`]: user, agent and share management and kicks, run directly on the
//!   data directory or through a running hub.
//! * [`store`]: persistence behind the [`store::HubStore`] trait (redb by default,
//!   PostgreSQL for a cluster).
//! * [`migrate`]: `komlog-hub migrate`, copying a data directory's store into
//!   PostgreSQL and checking the copy.
//! * [`cli_json`]: the JSON text the command line prints, datapoint values as
//!   exact numbers.
//! * [`http_client`]: the minimal HTTP/1.1 client the command line and tests use.
//! * [`tls`]: the certificate and key files, the TLS listener, and the admin
//!   client's TLS settings.
//! * [`cluster`]: several hubs as one service: the bus on NATS JetStream and
//!   logins shared through the cluster's store.
//! * [`metrics`] and [`ops`]: what a hub counts, `GET /metrics` and `GET /health`.
//! * [`web`]: the JSON API under `/api/v1/` (and the page at `/web/`) for
//!   people: log in with a password, browse, plot, read, export and share.
//!
//! The hub serves plain HTTP and websockets, or, given a certificate and its
//! key ([`HubConfig::tls`]), HTTPS and secure websockets.

pub mod actions;
pub mod admin;
pub mod auth;
pub mod cli_json;
pub mod cluster;
pub mod connection;
pub mod http_client;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tls;
pub mod web;

pub use server::{Hub, HubConfig, RunningHub};
