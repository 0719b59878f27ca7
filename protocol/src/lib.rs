//! The Komlog protocol v1, as both an agent and a server speak it.
//!
//! This crate is the wire model shared by the two ends, with no I/O but the
//! optional HTTP client:
//!
//! * [`message`]: the envelope `{v: 1, action, seq, irt, payload}` and a typed
//!   payload for each of the nine actions ([`Message`], [`Body`]); reading a frame
//!   checks every field and says how to answer a bad one ([`FrameError`]).
//! * [`status`]: status codes (4200 … 4503) and error numbers.
//! * [`timeuuid`]: version-1 TimeUUIDs, their hex wire form and Cassandra order.
//! * [`uri`]: uri and username rules and metric identity.
//! * [`value`]: metric kinds, the datasource size limit, datapoint decimals.
//! * [`login`]: the challenge handshake's fields and crypto, for both sides.
//! * [`openssh`]: the canonical OpenSSH public key line the server compares.
//! * `http` (feature `http-client`): one HTTP/1.1 POST on a connected stream,
//!   for the login and the hub's `/admin`.
//!
//! Section numbers in the documentation refer to the project's protocol
//! specification (`komlogd-spec.md`).

#[cfg(feature = "http-client")]
pub mod http;
pub mod login;
pub mod message;
pub mod openssh;
pub mod status;
pub mod timeuuid;
pub mod uri;
pub mod value;

pub use message::{
    Action, Body, DataInterval, DpData, DsData, DsInfo, FrameError, GenericResponse, Message,
    MultiData, MultiItem, RequestData, UriPayload, VERSION,
};
pub use status::Status;
pub use timeuuid::TimeUuid;
pub use uri::{MetricId, Uri, UriError, Username};
pub use value::Kind;
