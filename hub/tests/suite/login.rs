//! The `/login` handshake and the websocket's cookie check, over real HTTP and
//! websockets on 127.0.0.1.

use crate::common;

use std::time::Duration;

use common::*;
use komlog_protocol::login::{self, PrivateKey};
use komlog_protocol::status::login_error as code;
use komlog_protocol::{Body, Status, Uri, UriPayload};

common::on_both_stores!(
    a_registered_key_logs_in_and_its_cookie_opens_the_websocket,
    unknown_users_and_unregistered_keys_get_403,
    keys_under_4096_bits_are_refused,
    bad_form_fields_get_400,
    a_challenge_is_single_use_and_must_be_signed_by_the_key,
    an_expired_challenge_is_refused,
    the_websocket_closes_with_4403_without_a_valid_cookie,
    a_kick_closes_with_4403_and_the_cookie_stops_working,
);

async fn a_registered_key_logs_in_and_its_cookie_opens_the_websocket() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("Alice", 0);
    // Usernames are case-insensitive.
    let cookie = login_ok(hub.addr(), "ALICE", key(0)).await;
    let resp = login(hub.addr(), "alice", key(0)).await;
    let header = resp
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.contains("Path=/") && header.contains("HttpOnly"),
        "{header}"
    );
    assert!(
        !header.contains("Secure") && !header.contains("Domain"),
        "{header}"
    );
    let mut ws = Client::open(hub.addr(), Some(&cookie)).await;
    let r = ws
        .request(Body::HookToUri(UriPayload {
            uri: Uri::parse("x").unwrap(),
        }))
        .await;
    assert_status(&r, Status::NOT_FOUND, "hook on a new uri");
    // Each login is its own session.
    let sessions = hub.running.hub.sessions.list();
    assert_eq!(sessions.len(), 2);
    assert_ne!(sessions[0].sid, sessions[1].sid);
    ws.close().await;
}

async fn unknown_users_and_unregistered_keys_get_403() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    hub.add_user_with_key("bob", 1);
    let r = ask_challenge(hub.addr(), "nobody", key(0)).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::USER_NOT_FOUND))
    );
    // Bob's key is not alice's.
    let r = ask_challenge(hub.addr(), "alice", key(1)).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::KEY_NOT_REGISTERED))
    );
    let r = ask_challenge(hub.addr(), "alice", key(2)).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::KEY_NOT_REGISTERED))
    );
    // The registered key with a comment is not byte-identical: not registered.
    let with_comment = format!("{} alice@host", public_line(key(0)));
    let k = login::key_field(&with_comment);
    let r = post_login(hub.addr(), &[("u", "alice"), ("k", &k), ("pv", "1")]).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::KEY_NOT_REGISTERED))
    );
}

async fn keys_under_4096_bits_are_refused() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    let small = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let r = ask_challenge(hub.addr(), "alice", &small).await;
    assert_eq!((r.status, login_error(&r)), (500, u64::from(code::BAD_KEY)));
    // Registration refuses them too, naming the size.
    let err = komlog_hub::admin::execute(
        hub.store(),
        None,
        &komlog_hub::admin::AdminRequest::AddAgent {
            owner: user("alice"),
            public_line: public_line(&small),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("2048-bit"), "{err}");
    // A `k` that is base64 of something that is not a key.
    let k = login::key_field("ssh-rsa AAAA");
    let r = post_login(hub.addr(), &[("u", "alice"), ("k", &k), ("pv", "1")]).await;
    assert_eq!((r.status, login_error(&r)), (500, u64::from(code::BAD_KEY)));
}

async fn bad_form_fields_get_400() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    let k = login::key_field(&public_line(key(0)));
    let cases: Vec<(Vec<(&str, &str)>, u32)> = vec![
        (vec![("k", &k), ("pv", "1")], code::INVALID_USERNAME),
        (
            vec![("u", "bad user"), ("k", &k), ("pv", "1")],
            code::INVALID_USERNAME,
        ),
        (vec![("u", "alice"), ("pv", "1")], code::INVALID_KEY_FIELD),
        (
            vec![("u", "alice"), ("k", "%%%"), ("pv", "1")],
            code::INVALID_KEY_FIELD,
        ),
        (
            vec![("u", "alice"), ("k", &k)],
            code::INVALID_PROTOCOL_VERSION,
        ),
        (
            vec![("u", "alice"), ("k", &k), ("pv", "0")],
            code::INVALID_PROTOCOL_VERSION,
        ),
        (
            vec![("u", "alice"), ("k", &k), ("pv", "one")],
            code::INVALID_PROTOCOL_VERSION,
        ),
        (
            vec![("u", "alice"), ("k", &k), ("pv", "1"), ("c", "AAAA")],
            code::INVALID_CHALLENGE_FIELD,
        ),
        (
            vec![
                ("u", "alice"),
                ("k", &k),
                ("pv", "1"),
                ("c", "!!"),
                ("s", "AAAA"),
            ],
            code::INVALID_CHALLENGE_FIELD,
        ),
    ];
    for (fields, expected) in cases {
        let r = post_login(hub.addr(), &fields).await;
        assert_eq!(
            (r.status, login_error(&r)),
            (400, u64::from(expected)),
            "{fields:?}"
        );
    }
}

async fn a_challenge_is_single_use_and_must_be_signed_by_the_key() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    let first = ask_challenge(hub.addr(), "alice", key(0)).await;
    let challenge = first.json().unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, s) = login::answer_challenge(key(0), &challenge).unwrap();
    // A signature by another key over the right hash.
    let hash = login::decode_base64("c", &c).unwrap();
    let forged = login::encode_base64(&login::sign_challenge_hash(key(1), &hash).unwrap());
    let r = answer(hub.addr(), "alice", key(0), &c, &forged).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::BAD_SIGNATURE))
    );
    // The right answer still works (a bad signature does not use the challenge)…
    let r = answer(hub.addr(), "alice", key(0), &c, &s).await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookie("kid").is_some());
    // …once.
    let r = answer(hub.addr(), "alice", key(0), &c, &s).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::CHALLENGE_USED))
    );
    // A hash that was never issued.
    let never = login::encode_base64(&[7u8; 32]);
    let sig = login::encode_base64(&login::sign_challenge_hash(key(0), &[7u8; 32]).unwrap());
    let r = answer(hub.addr(), "alice", key(0), &never, &sig).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::CHALLENGE_NOT_FOUND))
    );
}

async fn an_expired_challenge_is_refused() {
    let hub = TestHub::start_with(|c| c.challenge_validity = Duration::from_millis(500)).await;
    hub.add_user_with_key("alice", 0);
    let first = ask_challenge(hub.addr(), "alice", key(0)).await;
    let challenge = first.json().unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, s) = login::answer_challenge(key(0), &challenge).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = answer(hub.addr(), "alice", key(0), &c, &s).await;
    assert_eq!(
        (r.status, login_error(&r)),
        (403, u64::from(code::CHALLENGE_EXPIRED))
    );
}

async fn the_websocket_closes_with_4403_without_a_valid_cookie() {
    let hub = TestHub::start().await;
    let mut none = Client::open(hub.addr(), None).await;
    none.expect_close(4403).await;
    let mut bad = Client::open(hub.addr(), Some("not-a-session")).await;
    bad.expect_close(4403).await;
}

async fn a_kick_closes_with_4403_and_the_cookie_stops_working() {
    let hub = TestHub::start().await;
    hub.add_user_with_key("alice", 0);
    let cookie = login_ok(hub.addr(), "alice", key(0)).await;
    let mut ws = Client::open(hub.addr(), Some(&cookie)).await;
    let r = ws
        .request(Body::UnhookFromUri(UriPayload {
            uri: Uri::parse("x").unwrap(),
        }))
        .await;
    assert_status(&r, Status::OK, "unhook");
    let sid = hub.running.hub.sessions.list()[0].sid.clone();
    let reply = komlog_hub::admin::execute(
        hub.store(),
        Some(&hub.running.hub.sessions),
        &komlog_hub::admin::AdminRequest::Kick {
            user: user("alice"),
            sid: None,
        },
    )
    .unwrap();
    assert_eq!(reply["kicked"][0].as_str(), Some(sid.as_str()));
    ws.expect_close(4403).await;
    let mut again = Client::open(hub.addr(), Some(&cookie)).await;
    again.expect_close(4403).await;
    // A new login works.
    let mut fresh = hub.connect("alice", 0).await;
    let r = fresh
        .request(Body::UnhookFromUri(UriPayload {
            uri: Uri::parse("x").unwrap(),
        }))
        .await;
    assert_status(&r, Status::OK, "after re-login");
}
