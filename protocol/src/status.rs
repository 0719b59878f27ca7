//! Status codes (spec §4.2), the error numbers that go with them, and the login
//! endpoint's error numbers (spec §3.2).
//!
//! A `generic_response` carries a [`Status`], an `error` number (0 on success)
//! and a `reason` text. The status is what clients act on; error numbers only
//! narrow it down. The numbers are the original server's (spec §4.6); the
//! few that are this protocol crate's own are marked so.

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

/// Error numbers carried in `generic_response.error`: the original server's
/// numbers (spec §4.6), except where marked as this crate's own.
pub mod error {
    use crate::message::Action;

    /// Success, and an unexpected failure (4501).
    pub const NONE: u32 = 0;
    /// The frame is not a message: not an object, or a bad `v`, `action` or
    /// `seq` (original: 350000).
    pub const MALFORMED_MESSAGE: u32 = 350_000;
    /// `v` is not 1 (original: 350001).
    pub const UNSUPPORTED_VERSION: u32 = 350_001;
    /// An action the receiver does not take: unknown, or (at a server) one only
    /// servers send (original: 200000).
    pub const UNSUPPORTED_ACTION: u32 = 200_000;
    /// A bad payload of `generic_response` or `send_data_interval`, which only a
    /// client reads and never answers (this crate's own number).
    pub const INVALID_PAYLOAD: u32 = 350_003;

    /// `send_ds_data`: invalid uri (original: 202050).
    pub const DS_INVALID_URI: u32 = 202_050;
    /// `send_ds_data`: content not a string, or over 131072 bytes (original: 202052).
    pub const DS_INVALID_CONTENT: u32 = 202_052;
    /// `send_ds_data`: `irt`, `uri`, `t` or `content` missing or unreadable, or
    /// the payload not an object (original: 202053).
    pub const DS_PAYLOAD: u32 = 202_053;
    /// `send_dp_data`: invalid uri (original: 202100).
    pub const DP_INVALID_URI: u32 = 202_100;
    /// `send_dp_data`: content not a finite decimal (original: 202102).
    pub const DP_INVALID_CONTENT: u32 = 202_102;
    /// `send_dp_data`: the payload as for [`DS_PAYLOAD`] (original: 202103).
    pub const DP_PAYLOAD: u32 = 202_103;
    /// `send_multi_data`: `uris` not a list, or an item not `{uri, type,
    /// content}` with a valid uri, type and content (original: 202200).
    pub const MULTI_INVALID_URIS: u32 = 202_200;
    /// `send_multi_data`: `irt`, `t` or `uris` missing or unreadable (original: 202203).
    pub const MULTI_PAYLOAD: u32 = 202_203;
    /// `send_ds_info`: invalid uri (original: 202150).
    pub const INFO_INVALID_URI: u32 = 202_150;
    /// `send_ds_info`: a supply that is not a local uri (original: 202151).
    pub const INFO_INVALID_SUPPLY: u32 = 202_151;
    /// `send_ds_info`: `supplies` neither null nor a list (original: 202152).
    pub const INFO_INVALID_SUPPLIES: u32 = 202_152;
    /// `send_ds_info`: `irt`, `uri` or `supplies` missing (original: 202153).
    pub const INFO_PAYLOAD: u32 = 202_153;
    /// `hook_to_uri`: invalid uri (original: 202300).
    pub const HOOK_INVALID_URI: u32 = 202_300;
    /// `hook_to_uri`: `irt` or `uri` missing (original: 202303).
    pub const HOOK_PAYLOAD: u32 = 202_303;
    /// `unhook_from_uri`: invalid uri (original: 202400).
    pub const UNHOOK_INVALID_URI: u32 = 202_400;
    /// `unhook_from_uri`: `irt` or `uri` missing (original: 202403).
    pub const UNHOOK_PAYLOAD: u32 = 202_403;
    /// `request_data`: invalid uri (original: 202500).
    pub const DATA_INVALID_URI: u32 = 202_500;
    /// `request_data`: `irt`, `uri`, `start`, `end` or `count` missing, or a
    /// bound neither null nor a uuid (original: 202503).
    pub const DATA_PAYLOAD: u32 = 202_503;
    /// `request_data`: `count` null with an open bound (original: 202504).
    pub const DATA_COUNT_OR_INTERVAL: u32 = 202_504;
    /// `request_data`: `count` not an integer >= 0 (original: 202505).
    pub const DATA_INVALID_COUNT: u32 = 202_505;

    /// The error number of a bad envelope (`irt`, `payload`) or a missing field
    /// of `action`'s payload: the action's "error loading from dict".
    pub fn payload_error(action: Action) -> u32 {
        match action {
            Action::SendDsData => DS_PAYLOAD,
            Action::SendDpData => DP_PAYLOAD,
            Action::SendMultiData => MULTI_PAYLOAD,
            Action::SendDsInfo => INFO_PAYLOAD,
            Action::HookToUri => HOOK_PAYLOAD,
            Action::UnhookFromUri => UNHOOK_PAYLOAD,
            Action::RequestData => DATA_PAYLOAD,
            Action::GenericResponse | Action::SendDataInterval => INVALID_PAYLOAD,
        }
    }

    /// A write to another user's uri in `send_ds_data` (original: 201102).
    pub const DS_FOREIGN_URI: u32 = 201_102;
    /// `send_ds_data` to a uri that is not a datasource (original: 201100).
    pub const NOT_A_DATASOURCE: u32 = 201_100;
    /// A write to another user's uri in `send_dp_data` (original: 201202).
    pub const DP_FOREIGN_URI: u32 = 201_202;
    /// `send_dp_data` to a uri that is not a datapoint (original: 201200).
    pub const NOT_A_DATAPOINT: u32 = 201_200;
    /// `send_multi_data`: a `p` item onto an existing datasource, or a `d` item
    /// that is not a number onto an existing datapoint (original: 201308).
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
    /// `hook_to_uri` registered for a uri that does not exist yet (original: 201400).
    pub const HOOK_PENDING: u32 = 201_400;
    /// `hook_to_uri` on `owner:uri` whose owner is not a user (original: 201402).
    pub const HOOK_NO_SUCH_OWNER: u32 = 201_402;
    /// `unhook_from_uri` on `owner:uri` whose owner is not a user (original: 201502).
    pub const UNHOOK_NO_SUCH_OWNER: u32 = 201_502;
    /// `hook_to_uri` on another user's missing uri not shared with the session's
    /// user (original: 52411).
    pub const HOOK_DENIED_MISSING: u32 = 52_411;
    /// `hook_to_uri` on another user's datasource not shared (original: 52370).
    pub const HOOK_DENIED_DATASOURCE: u32 = 52_370;
    /// `hook_to_uri` on another user's datapoint not shared (original: 52360).
    pub const HOOK_DENIED_DATAPOINT: u32 = 52_360;
    /// `unhook_from_uri` on another user's missing uri not shared (original: 52421).
    pub const UNHOOK_DENIED_MISSING: u32 = 52_421;
    /// `unhook_from_uri` on another user's datasource not shared (original: 52390).
    pub const UNHOOK_DENIED_DATASOURCE: u32 = 52_390;
    /// `unhook_from_uri` on another user's datapoint not shared (original: 52380).
    pub const UNHOOK_DENIED_DATAPOINT: u32 = 52_380;
    /// `request_data` on `owner:uri` whose owner is not a user (original: 201604).
    pub const DATA_NO_SUCH_OWNER: u32 = 201_604;
    /// `request_data` on a readable uri that does not exist (original: 201600).
    pub const DATA_NOT_FOUND: u32 = 201_600;
    /// `request_data` on another user's missing uri not shared (original: 52401).
    pub const DATA_DENIED_MISSING: u32 = 52_401;
    /// `request_data` on another user's datasource not shared (original: 52030).
    pub const DATA_DENIED_DATASOURCE: u32 = 52_030;
    /// `request_data` on another user's datapoint not shared (original: 52060).
    pub const DATA_DENIED_DATAPOINT: u32 = 52_060;
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
