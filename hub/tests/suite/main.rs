//! komlog-hub's integration tests, one module per concern, in one test binary:
//! the shared helpers (`common`: an in-process hub, keys, the login handshake,
//! a websocket client) are compiled and linked once, and the RSA keys they
//! generate are made once for all of them. `python_client.rs` (the real
//! komlogd 0.12.0 client) and `install.rs` (`cargo install`) stay binaries of
//! their own.
//!
//! | module | what it checks |
//! |---|---|
//! | `actions` | each action over a real websocket: refusals, sharing, pending hooks, fan-out, paging |
//! | `admin` | the removal and listing commands, on a data directory and a running hub |
//! | `answers` | every status and error answer, case by case (spec §4.6) |
//! | `cli` | the `komlog-hub` binary's commands |
//! | `cluster` | three hubs on one PostgreSQL and one NATS: logins, hooks, notifications, kicks, drain |
//! | `login` | the `/login` handshake and the websocket's cookie check |
//! | `serve` | a served hub's files, admin endpoint and deadlines |
//! | `web_api` | the web API at `/api/v1/` and the page's files |

#[path = "../common/mod.rs"]
mod common;

mod actions;
mod admin;
mod answers;
mod cli;
mod cluster;
mod login;
mod serve;
mod web_api;
