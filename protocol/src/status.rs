//! Status codes (spec §4.2), the error numbers that go with them, and the login
//! endpoint's error numbers (spec §3.2).
//!
//! A `generic_response` carries a [`Status`], an `error` number (0 on success)
//! and a `reason` text. The status is what clients act on; error numbers only
//! narrow it down. Where the original server's number is known it is used; the
//! others are this protocol crate's own and are marked so.

/// A protocol status code, sent in `generic_response.status` and as websocket
/// close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    /// 4200: done.
    pub const OK: Status = Status(4200);
    /// 4202: accepted; more messages follow (`request_data`).
    pub const ACCEPTED: Status = Status(4202);
    /// 4400: malformed or invalid message (including invalid content).
    pub const PROTOCOL_ERROR: Status = Status(4400);
    /// 4403: access denied; used as the websocket close code.
    pub const ACCESS_DENIED: Status = Status(4403);
    /// 4404: the uri does not exist.
    pub const NOT_FOUND: Status = Status(4404);
    /// 4430: not allowed (another user's uri, wrong kind, no permission).
    pub const DENIED: Status = Status(4430);
    /// 4500: internal error.
    pub const INTERNAL_ERROR: Status = Status(4500);
    /// 4501: the message could not be executed.
    pub const EXECUTION_ERROR: Status = Status(4501);
    /// 4503: service unavailable; also a websocket close code.
    pub const UNAVAILABLE: Status = Status(4503);

    /// The code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// The name used by the original sources (`MESSAGE_EXECUTION_OK`, …).
    pub fn name(self) -> &'static str {
        match self.0 {
            4200 => "MESSAGE_EXECUTION_OK",
            4202 => "MESSAGE_ACCEPTED_FOR_PROCESSING",
            4400 => "PROTOCOL_ERROR",
            4403 => "ACCESS_DENIED",
            4404 => "RESOURCE_NOT_FOUND",
            4430 => "MESSAGE_EXECUTION_DENIED",
            4500 => "INTERNAL_ERROR",
            4501 => "MESSAGE_EXECUTION_ERROR",
            4503 => "SERVICE_UNAVAILABLE",
            _ => "UNKNOWN",
        }
    }

    /// True for 4200 and 4202.
    pub fn is_success(self) -> bool {
        self == Status::OK || self == Status::ACCEPTED
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.name())
    }
}

/// Error numbers carried in `generic_response.error`.
pub mod error {
    /// Success.
    pub const NONE: u32 = 0;
    /// The frame is not a message: not JSON, not an object, or a bad `v`,
    /// `action` or `seq` (original: 350000).
    pub const MALFORMED_MESSAGE: u32 = 350_000;
    /// `v` is not 1 (original: 350001).
    pub const UNSUPPORTED_VERSION: u32 = 350_001;
    /// An action this side does not accept (this crate's own number).
    pub const UNSUPPORTED_ACTION: u32 = 350_002;
    /// A payload field is missing or invalid (this crate's own number).
    pub const INVALID_PAYLOAD: u32 = 350_003;
    /// A write to another user's uri in `send_ds_data` (original: 201102).
    pub const DS_FOREIGN_URI: u32 = 201_102;
    /// `send_ds_data` to a uri that is not a datasource (original: 201100).
    pub const NOT_A_DATASOURCE: u32 = 201_100;
    /// A write to another user's uri in `send_dp_data` (this crate's own number).
    pub const DP_FOREIGN_URI: u32 = 201_202;
    /// `send_dp_data` to a uri that is not a datapoint (original: 201200).
    pub const NOT_A_DATAPOINT: u32 = 201_200;
    /// `send_multi_data` content invalid for its type (original: 201308).
    pub const MULTI_INVALID_CONTENT: u32 = 201_308;
    /// `send_multi_data` to a uri of the other kind (original: 201301).
    pub const MULTI_KIND_MISMATCH: u32 = 201_301;
    /// `send_multi_data` naming another user's uri (original: 201309).
    pub const MULTI_FOREIGN_URI: u32 = 201_309;
    /// `send_ds_info` on a uri that is not a datasource (original: 201150).
    pub const INFO_NOT_A_DATASOURCE: u32 = 201_150;
    /// `send_ds_info` on a uri that does not exist (original: 201151).
    pub const INFO_NOT_FOUND: u32 = 201_151;
    /// `send_ds_info` on another user's uri (original: 201152).
    pub const INFO_FOREIGN_URI: u32 = 201_152;
    /// `hook_to_uri` registered for a uri that does not exist yet (this crate's own number).
    pub const HOOK_PENDING: u32 = 201_404;
    /// `hook_to_uri` on a uri the session may not read (this crate's own number).
    pub const HOOK_DENIED: u32 = 201_430;
    /// `request_data` on a uri that does not exist (this crate's own number).
    pub const DATA_NOT_FOUND: u32 = 201_604;
    /// `request_data` on a uri the session may not read (this crate's own number).
    pub const DATA_DENIED: u32 = 201_630;
    /// The server failed while executing the message (this crate's own number).
    pub const INTERNAL: u32 = 350_500;
}

/// Error numbers in the login endpoint's `{"error": N}` bodies (spec §3.2).
pub mod login_error {
    /// 400: the username is invalid (original: 105200).
    pub const INVALID_USERNAME: u32 = 105_200;
    /// 400: `k` is missing or not base64 (original: 105201).
    pub const INVALID_KEY_FIELD: u32 = 105_201;
    /// 400: `pv` is missing, not an integer string, or 0 (original: 105202).
    pub const INVALID_PROTOCOL_VERSION: u32 = 105_202;
    /// 400: `c` or `s` is not base64 (this crate's own number).
    pub const INVALID_CHALLENGE_FIELD: u32 = 105_203;
    /// 500: the key does not parse as an OpenSSH RSA key, or is under 4096 bits
    /// (original: 3701).
    pub const BAD_KEY: u32 = 3_701;
    /// 403: the user does not exist (original: 3702).
    pub const USER_NOT_FOUND: u32 = 3_702;
    /// 403: the key is not registered for the user (original: 3703).
    pub const KEY_NOT_REGISTERED: u32 = 3_703;
    /// 403: the agent is not active (original: 3706).
    pub const AGENT_NOT_ACTIVE: u32 = 3_706;
    /// 403: no such challenge was issued to this agent (original: 3806).
    pub const CHALLENGE_NOT_FOUND: u32 = 3_806;
    /// 403: the challenge was already answered (original: 3807).
    pub const CHALLENGE_USED: u32 = 3_807;
    /// 403: the challenge is older than its validity (original: 3808).
    pub const CHALLENGE_EXPIRED: u32 = 3_808;
    /// 403: the signature does not verify (original: 3810).
    pub const BAD_SIGNATURE: u32 = 3_810;
}
