//! The web API (`/api/v1/`) over real HTTP against an in-process hub with a
//! real store: login, sessions, CSRF, tokens, who may read what (the whole
//! matrix), every endpoint's answers and its refusals of bad input, export,
//! and the live stream.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use komlog_hub::admin::{self, AdminRequest};
use komlog_hub::http_client;
use komlog_hub::store::NewSample;
use komlog_hub::web::auth;
use komlog_protocol::{Body, DpData, Kind, MetricId, Status, TimeUuid, Uri};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = "correct horse battery";

/// What one request answered.
struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {}", self.body))
            .to_owned()
    }
}

/// How a test client authenticates.
#[derive(Clone, Default)]
struct Auth {
    cookie: Option<String>,
    csrf: Option<String>,
    token: Option<String>,
}

async fn call(
    addr: SocketAddr,
    auth: &Auth,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut headers = Vec::new();
    if let Some(c) = &auth.cookie {
        headers.push(("cookie", format!("{}={c}", auth::COOKIE_NAME)));
    }
    if let Some(c) = &auth.csrf {
        headers.push((auth::CSRF_HEADER, c.clone()));
    }
    if let Some(t) = &auth.token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json".to_owned()));
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let r = http_client::request(addr, method, path, &headers, bytes, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Answer {
        status: r.status,
        headers: r.headers,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

async fn get(addr: SocketAddr, auth: &Auth, path: &str) -> Answer {
    call(addr, auth, "GET", path, None).await
}

async fn login_answer(addr: SocketAddr, name: &str, password: &str) -> Answer {
    call(
        addr,
        &Auth::default(),
        "POST",
        "/api/v1/login",
        Some(json!({"user": name, "password": password})),
    )
    .await
}

/// Log in with the test password; the session's cookie and CSRF token.
async fn session(addr: SocketAddr, name: &str) -> Auth {
    let a = login_answer(addr, name, PASSWORD).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = http_client::HttpResponse {
        status: a.status,
        headers: a.headers.clone(),
        body: Vec::new(),
    }
    .set_cookie(auth::COOKIE_NAME)
    .expect("session cookie");
    Auth {
        cookie: Some(cookie),
        csrf: Some(a.json()["csrf"].as_str().expect("csrf").to_owned()),
        token: None,
    }
}

fn set_password(hub: &TestHub, name: &str) {
    let phc = auth::hash_password(PASSWORD).unwrap();
    hub.store().set_password(&user(name), Some(&phc)).unwrap();
}

fn t(us: i64) -> TimeUuid {
    TimeUuid::random_at(us).unwrap()
}

fn dp(uri: &str, us: i64, v: &str) -> NewSample {
    NewSample {
        uri: uri.into(),
        kind: Kind::Datapoint,
        t: t(us),
        content: v.into(),
    }
}

fn ds(uri: &str, us: i64, text: &str) -> NewSample {
    NewSample {
        uri: uri.into(),
        kind: Kind::Datasource,
        t: t(us),
        content: text.into(),
    }
}

const T0: i64 = 1_765_000_000_000_000;

/// alice (password), bob (password) who shares `b.shared` with alice, carol
/// (no password) whose uris nobody shares.
async fn three_users() -> TestHub {
    let hub = TestHub::start().await;
    for name in ["alice", "bob", "carol"] {
        hub.store().add_user(&user(name)).unwrap();
    }
    set_password(&hub, "alice");
    set_password(&hub, "bob");
    hub.seed(
        "alice",
        &[dp("a.x", T0, "1"), dp("a.x", T0 + 1_000_000, "2.5")],
    );
    hub.seed(
        "alice",
        &[
            ds("a.log", T0, "first"),
            ds("a.log", T0 + 2_000_000, "second"),
        ],
    );
    hub.seed(
        "bob",
        &[dp("b.shared.cpu", T0, "7"), dp("b.hidden", T0, "8")],
    );
    hub.seed("carol", &[dp("c.z", T0, "9")]);
    hub.share("bob", "b.shared", "alice");
    hub
}

fn range_q() -> String {
    format!("from={}&to={}", T0 - 1_000_000, T0 + 10_000_000)
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_refuses_wrong_passwords() {
    let hub = three_users().await;
    let addr = hub.addr();
    let wrong = login_answer(addr, "alice", "wrong password").await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.error().contains("wrong user or password"),
        "{}",
        wrong.body
    );
    assert!(wrong.headers.get("set-cookie").is_none());
    // No such user, and a user without a password: the same answer.
    for (name, pw) in [("nobody", PASSWORD), ("carol", PASSWORD)] {
        let a = login_answer(addr, name, pw).await;
        assert_eq!((a.status, a.error()), (401, wrong.error()), "{name}");
    }
    let ok = login_answer(addr, "Alice", PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cookie = ok.headers.get("set-cookie").unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(ok.json()["user"], "alice");
    let me = session(addr, "alice").await;
    let who = get(addr, &me, "/api/v1/me").await;
    assert_eq!(who.status, 200);
    assert_eq!(who.json()["user"], "alice");
    assert_eq!(who.json()["via"], "cookie");
    assert_eq!(who.json()["csrf"].as_str(), me.csrf.as_deref());
    // No secret in a URL: the session is only in the cookie.
    assert!(!who.body.contains(me.cookie.as_deref().unwrap()));
    // Log out (with the CSRF token): the cookie stops working.
    let out = call(addr, &me, "POST", "/api/v1/logout", None).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(
        out.headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(get(addr, &me, "/api/v1/me").await.status, 401);
}

#[tokio::test]
async fn failed_logins_are_limited_per_user() {
    let hub = three_users().await;
    let addr = hub.addr();
    for _ in 0..auth::MAX_FAILS_PER_USER {
        assert_eq!(login_answer(addr, "alice", "nope").await.status, 401);
    }
    // Even the right password waits now.
    let blocked = login_answer(addr, "alice", PASSWORD).await;
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    let retry: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > 0 && retry <= auth::FAIL_WINDOW.as_secs() + 1,
        "{retry}"
    );
    // Another user is not blocked by alice's failures.
    assert_eq!(login_answer(addr, "bob", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_changed_password_or_a_removed_user_ends_the_sessions() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    let bob = session(addr, "bob").await;
    let phc = auth::hash_password("another password").unwrap();
    hub.store()
        .set_password(&user("alice"), Some(&phc))
        .unwrap();
    assert_eq!(get(addr, &alice, "/api/v1/me").await.status, 401);
    assert_eq!(get(addr, &bob, "/api/v1/me").await.status, 200);
    admin::execute(
        hub.store(),
        None,
        &AdminRequest::RemoveUser { name: user("bob") },
    )
    .unwrap();
    assert_eq!(get(addr, &bob, "/api/v1/me").await.status, 401);
}

#[tokio::test]
async fn changes_with_the_cookie_need_the_csrf_token_and_tokens_do_not() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    let no_csrf = Auth {
        csrf: None,
        ..alice.clone()
    };
    let forged = Auth {
        csrf: Some("0".repeat(64)),
        ..alice.clone()
    };
    let share = json!({"prefix": "a.x", "with": "carol"});
    for who in [&no_csrf, &forged] {
        let a = call(addr, who, "POST", "/api/v1/shares", Some(share.clone())).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.error().contains("x-csrf-token"), "{}", a.body);
    }
    assert!(hub.store().shares_of(&user("alice")).unwrap().is_empty());
    let a = call(addr, &alice, "POST", "/api/v1/shares", Some(share)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    // A token: no CSRF token needed, and revoking it ends it.
    let token = auth::new_api_token();
    let digest: String = auth::token_digest(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let add = AdminRequest::AddToken {
        owner: user("alice"),
        name: "script".into(),
        digest,
    };
    admin::execute(hub.store(), None, &add).unwrap();
    let script = Auth {
        token: Some(token.clone()),
        ..Auth::default()
    };
    assert_eq!(
        get(addr, &script, "/api/v1/me").await.json()["via"],
        "token"
    );
    let del = call(
        addr,
        &script,
        "DELETE",
        "/api/v1/shares?prefix=a.x&with=carol",
        None,
    )
    .await;
    assert_eq!(del.status, 200, "{}", del.body);
    let remove = AdminRequest::RemoveToken {
        owner: user("alice"),
        name: "script".into(),
    };
    admin::execute(hub.store(), None, &remove).unwrap();
    assert_eq!(get(addr, &script, "/api/v1/me").await.status, 401);
    let garbage = Auth {
        token: Some("kt_nope".into()),
        ..Auth::default()
    };
    assert_eq!(get(addr, &garbage, "/api/v1/me").await.status, 401);
}

/// Every read endpoint, for every kind of uri and caller: own and shared
/// answer 200; not shared, another user's, and missing answer the same 404;
/// no credentials answer 401.
#[tokio::test]
async fn who_may_read_what_on_every_endpoint() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    let anonymous = Auth::default();
    let r = range_q();
    let endpoints = |uri: &str, ds: bool| -> Vec<String> {
        let mut v = vec![
            format!("/api/v1/series?uri={uri}&{r}&columns=50"),
            format!("/api/v1/samples?uri={uri}&{r}"),
            format!("/api/v1/samples?uri={uri}&{r}&format=csv"),
        ];
        if ds {
            v.push(format!("/api/v1/text?uri={uri}&at={}", T0 + 5_000_000));
        }
        v
    };
    let cases: [(&str, bool, u16); 6] = [
        ("a.x", false, 200),
        ("a.log", true, 200),
        ("bob:b.shared.cpu", false, 200),
        ("bob:b.hidden", false, 404),
        ("carol:c.z", false, 404),
        ("a.missing", false, 404),
    ];
    let mut not_found_bodies = Vec::new();
    for (uri, ds, expected) in cases {
        for path in endpoints(uri, ds) {
            let a = get(addr, &alice, &path).await;
            assert_eq!(a.status, expected, "{path}: {}", a.body);
            if expected == 404 {
                not_found_bodies.push(a.error().replace(uri, "URI"));
            }
            let anon = get(addr, &anonymous, &path).await;
            assert_eq!(
                anon.status, 401,
                "{path} without credentials: {}",
                anon.body
            );
        }
    }
    // Missing and not shared cannot be told apart.
    not_found_bodies.dedup();
    assert_eq!(not_found_bodies.len(), 1, "{not_found_bodies:?}");
    // The listing shows own uris and the shared ones, nothing else.
    let list = get(addr, &alice, "/api/v1/uris").await.json();
    let own: Vec<&str> = list["own"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["uri"].as_str().unwrap())
        .collect();
    assert_eq!(own, ["a.log", "a.x"]);
    let shared = list["shared"].as_array().unwrap();
    assert_eq!(shared.len(), 1, "{list}");
    assert_eq!(shared[0]["owner"], "bob");
    assert_eq!(shared[0]["uris"][0]["uri"], "b.shared.cpu");
    assert_eq!(shared[0]["uris"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["own"][1]["count"], 2);
    assert_eq!(list["own"][1]["first"], T0);
    assert_eq!(list["own"][1]["last"], T0 + 1_000_000);
    assert_eq!(get(addr, &anonymous, "/api/v1/uris").await.status, 401);
    // Agents and shares are the caller's own.
    let bob = session(addr, "bob").await;
    let shares = get(addr, &bob, "/api/v1/shares").await.json();
    assert_eq!(
        shares["given"],
        json!([{"prefix": "b.shared", "with": "alice"}])
    );
    let shares = get(addr, &alice, "/api/v1/shares").await.json();
    assert_eq!(
        shares["received"],
        json!([{"owner": "bob", "prefix": "b.shared"}])
    );
    assert_eq!(shares["given"], json!([]));
    // alice cannot withdraw bob's share: she has none of that name.
    let a = call(
        addr,
        &alice,
        "DELETE",
        "/api/v1/shares?prefix=b.shared&with=alice",
        None,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(hub.store().shares_of(&user("bob")).unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    let cases: &[(&str, u16, &str)] = &[
        ("/api/v1/series", 400, "\"uri\" is missing"),
        ("/api/v1/series?uri=a.x&from=20&to=10", 400, "reversed"),
        ("/api/v1/series?uri=a.x&columns=0", 400, "\"columns\""),
        ("/api/v1/series?uri=a.x&columns=100001", 400, "\"columns\""),
        ("/api/v1/series?uri=a.x&columns=many", 400, "\"columns\""),
        ("/api/v1/series?uri=a.x&from=yesterday", 400, "\"from\""),
        (
            "/api/v1/series?uri=a.x&to=99999999999999999999",
            400,
            "\"to\"",
        ),
        (
            "/api/v1/series?uri=a.x&from=-99999999999999999",
            400,
            "TimeUUID",
        ),
        ("/api/v1/series?uri=a.x&colums=5", 400, "unknown parameter"),
        ("/api/v1/series?uri=a.x&uri=a.y", 400, "twice"),
        ("/api/v1/series?uri=..bad..", 400, "not a uri"),
        ("/api/v1/samples?uri=a.x&limit=0", 400, "\"limit\""),
        ("/api/v1/samples?uri=a.x&limit=1000001", 400, "\"limit\""),
        ("/api/v1/samples?uri=a.x&order=sideways", 400, "\"order\""),
        ("/api/v1/samples?uri=a.x&format=xml", 400, "\"format\""),
        ("/api/v1/text?uri=a.log&dir=up", 400, "\"dir\""),
        ("/api/v1/text?uri=a.log&at=1", 404, "no sample"),
        ("/api/v1/live", 400, "uri"),
        ("/api/v1/live?uri=a.x&format=x", 400, "unknown parameter"),
        ("/api/v1/nothing-here", 404, "no such endpoint"),
    ];
    for (path, status, says) in cases {
        let a = get(addr, &alice, path).await;
        assert_eq!(a.status, *status, "{path}: {}", a.body);
        assert!(
            a.error().contains(says),
            "{path}: {:?} should say {says:?}",
            a.error()
        );
    }
    // A huge range is fine: the answer is reduced.
    let huge = get(
        addr,
        &alice,
        "/api/v1/series?uri=a.x&from=-12000000000000000&to=100000000000000000",
    )
    .await;
    assert_eq!(huge.status, 200, "{}", huge.body);
    assert_eq!(huge.json()["rows"], 2);
    // Bodies: not JSON, missing fields, wrong types.
    for body in ["not json", "{}", "{\"user\": 1, \"password\": []}"] {
        let r = http_client::request(
            addr,
            "POST",
            "/api/v1/login",
            &[("content-type", "application/json".to_owned())],
            body.as_bytes().to_vec(),
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 400, "{body}");
    }
    let a = call(
        addr,
        &alice,
        "POST",
        "/api/v1/shares",
        Some(json!({"prefix": "a.x", "with": "no body!"})),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = call(
        addr,
        &alice,
        "POST",
        "/api/v1/shares",
        Some(json!({"prefix": "a.x", "with": "ghost"})),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = call(
        addr,
        &alice,
        "POST",
        "/api/v1/agents",
        Some(json!({"public_key": "ssh-rsa AAAA"})),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = call(addr, &alice, "DELETE", "/api/v1/agents/0123", None).await;
    assert_eq!(a.status, 404, "{}", a.body);
    // The description is served.
    let spec = get(addr, &Auth::default(), "/api/v1/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert!(spec.json()["paths"]["/series"].is_object());
}

#[tokio::test]
async fn samples_export_as_json_and_csv_with_the_stored_values() {
    let hub = three_users().await;
    let addr = hub.addr();
    hub.seed(
        "alice",
        &[
            dp("a.big", T0, "12345678901234567.5"),
            dp("a.big", T0 + 1, "-0.001"),
        ],
    );
    hub.seed(
        "alice",
        &[ds("a.log", T0 + 3_000_000, "a, \"quoted\"\nline")],
    );
    let alice = session(addr, "alice").await;
    let j = get(
        addr,
        &alice,
        &format!("/api/v1/samples?uri=a.big&{}", range_q()),
    )
    .await;
    assert_eq!(j.status, 200);
    // Digit for digit: the body holds the stored text as a JSON number.
    assert!(
        j.body.contains("\"value\":12345678901234567.5"),
        "{}",
        j.body
    );
    assert!(j.body.contains("\"value\":-0.001"), "{}", j.body);
    assert_eq!(j.json()["more"], false);
    let desc = get(
        addr,
        &alice,
        &format!("/api/v1/samples?uri=a.big&{}&order=desc&limit=1", range_q()),
    )
    .await
    .json();
    assert_eq!(desc["rows"].as_array().unwrap().len(), 1);
    assert_eq!(desc["rows"][0]["t"], T0 + 1);
    assert_eq!(desc["more"], true);
    let csv = get(
        addr,
        &alice,
        &format!("/api/v1/samples?uri=a.log&{}&format=csv", range_q()),
    )
    .await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("alice_a.log.csv")
    );
    let stored = hub
        .store()
        .read_oldest(
            &MetricId {
                owner: user("alice"),
                local: "a.log".into(),
            },
            TimeUuid::MIN,
            TimeUuid::MAX,
            100,
        )
        .unwrap();
    let mut expected = String::from("time_us,time,value\n");
    for (t, text) in &stored {
        let field = if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.clone()
        };
        expected.push_str(&format!(
            "{},{},{}\n",
            t.micros(),
            komlog_hub::web::api::rfc3339(t.micros()),
            field
        ));
    }
    assert_eq!(csv.body, expected);
    assert!(
        csv.body.contains("\"a, \"\"quoted\"\"\nline\""),
        "{}",
        csv.body
    );
}

#[tokio::test]
async fn text_walks_from_sample_to_sample() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    hub.store()
        .set_supplies(
            &MetricId {
                owner: user("alice"),
                local: "a.log".into(),
            },
            &["a.x".into()],
        )
        .unwrap();
    let at = |q: &str| format!("/api/v1/text?uri=a.log&{q}");
    let newest = get(addr, &alice, &at(&format!("at={}", T0 + 9_000_000)))
        .await
        .json();
    assert_eq!(newest["text"], "second");
    assert_eq!(newest["prev"], T0);
    assert_eq!(newest["next"], Value::Null);
    assert_eq!(newest["supplies"], json!(["a.x"]));
    let before = get(
        addr,
        &alice,
        &at(&format!("at={}&dir=before", T0 + 2_000_000)),
    )
    .await
    .json();
    assert_eq!(
        (before["text"].as_str(), before["next"].as_i64()),
        (Some("first"), Some(T0 + 2_000_000))
    );
    let after = get(addr, &alice, &at(&format!("at={T0}&dir=after")))
        .await
        .json();
    assert_eq!(after["text"], "second");
    // RFC 3339 times work as well as microseconds.
    let rfc = komlog_hub::web::api::rfc3339(T0 + 1_000_000);
    let a = get(addr, &alice, &at(&format!("at={rfc}"))).await.json();
    assert_eq!(a["text"], "first");
}

#[tokio::test]
async fn series_reduces_a_range_to_columns_and_shows_gaps() {
    let hub = three_users().await;
    let addr = hub.addr();
    // Two bursts of 100 samples with nothing between them.
    let mut burst: Vec<NewSample> = (0..100)
        .map(|i| dp("a.wave", T0 + i * 1_000, &format!("{}", i % 7)))
        .collect();
    burst.extend((0..100).map(|i| {
        dp(
            "a.wave",
            T0 + 90_000_000 + i * 1_000,
            &format!("{}", 10 + i % 5),
        )
    }));
    hub.seed("alice", &burst);
    let alice = session(addr, "alice").await;
    let s = get(
        addr,
        &alice,
        &format!(
            "/api/v1/series?uri=a.wave&from={T0}&to={}&columns=10",
            T0 + 100_000_000
        ),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let s = s.json();
    assert_eq!(s["rows"], 200);
    let counts: u64 = s["counts"]["n"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 200);
    let v = s["points"]["v"].as_array().unwrap();
    let t = s["points"]["t"].as_array().unwrap();
    assert_eq!(v.len(), t.len());
    assert!(
        v.len() <= 4 * 2 + 1,
        "at most 4 points a column and a gap: {s}"
    );
    assert!(v.contains(&Value::Null), "the empty columns are a gap: {s}");
    let values: Vec<f64> = v.iter().filter_map(Value::as_f64).collect();
    assert_eq!(values.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
    assert_eq!(
        values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        14.0
    );
    let times: Vec<i64> = t.iter().map(|x| x.as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "time order: {times:?}"
    );
    // A sample a minute, drawn in columns of a few seconds, is a line: no gap
    // until samples stop for more than three times their usual spacing.
    let minutely: Vec<NewSample> = (0..60)
        .filter(|m| !(30..40).contains(m))
        .map(|m| dp("a.minutely", T0 + m * 60_000_000, "1"))
        .collect();
    hub.seed("alice", &minutely);
    let s = get(
        addr,
        &alice,
        &format!(
            "/api/v1/series?uri=a.minutely&from={T0}&to={}&columns=1000",
            T0 + 3_600_000_000
        ),
    )
    .await
    .json();
    let v = s["points"]["v"].as_array().unwrap();
    assert_eq!(
        v.iter().filter(|x| x.is_null()).count(),
        1,
        "one gap, where ten minutes are missing: {s}"
    );
    assert_eq!(v.len(), 50 + 1);
}

/// A server-sent event stream, read line by line.
struct Events {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl Events {
    async fn open(addr: SocketAddr, auth: &Auth, query: &str) -> Events {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let cookie = auth.cookie.as_deref().unwrap();
        let req = format!(
            "GET /api/v1/live?{query} HTTP/1.1\r\nHost: localhost\r\nCookie: {}={cookie}\r\nAccept: text/event-stream\r\n\r\n",
            auth::COOKIE_NAME
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await.unwrap().unwrap();
        assert!(status.contains(" 200 "), "{status}");
        Events { lines }
    }

    /// The next `(event, data)`, within `WAIT`.
    async fn next(&mut self) -> (String, String) {
        let deadline = Instant::now() + WAIT;
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream is open");
            if let Some(e) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                data = d.trim().to_owned();
            } else if line.is_empty() && !event.is_empty() {
                return (event, data);
            }
        }
    }
}

#[tokio::test]
async fn live_streams_new_samples_until_the_share_is_withdrawn() {
    let hub = three_users().await;
    let addr = hub.addr();
    hub.add_user_with_key("bob", 0);
    let alice = session(addr, "alice").await;
    let mut events = Events::open(addr, &alice, "uri=bob:b.shared.cpu&uri=a.x").await;
    let mut agent = hub.connect("bob", 0).await;
    let write = |v: &str| {
        Body::SendDpData(DpData {
            uri: Uri::parse("b.shared.cpu").unwrap(),
            t: TimeUuid::now(),
            content: v.into(),
        })
    };
    let written_at = Instant::now();
    let answer = agent.request(write("42.5")).await;
    assert_eq!(answer.status, Status::OK, "{answer:?}");
    let (event, data) = events.next().await;
    assert!(
        written_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        written_at.elapsed()
    );
    assert_eq!(event, "sample");
    let sample: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (sample["owner"].as_str(), sample["uri"].as_str()),
        (Some("bob"), Some("b.shared.cpu"))
    );
    assert!(data.contains("\"value\":42.5"), "{data}");
    // bob withdraws the share: the next write ends alice's stream.
    let bob = session(addr, "bob").await;
    let del = call(
        addr,
        &bob,
        "DELETE",
        "/api/v1/shares?prefix=b.shared&with=alice",
        None,
    )
    .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(agent.request(write("43")).await.status, Status::OK);
    let (event, _) = events.next().await;
    assert_eq!(event, "revoked");
}

#[tokio::test]
async fn agents_are_listed_added_and_revoked_with_their_sessions() {
    let hub = three_users().await;
    let addr = hub.addr();
    let alice = session(addr, "alice").await;
    let line = public_line(key(1));
    let added = call(
        addr,
        &alice,
        "POST",
        "/api/v1/agents",
        Some(json!({"public_key": format!("{line} me@host\n")})),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let again = call(
        addr,
        &alice,
        "POST",
        "/api/v1/agents",
        Some(json!({"public_key": line})),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let list = get(addr, &alice, "/api/v1/agents").await.json();
    let agent = &list["agents"][0];
    assert_eq!(agent["public_line"], line.as_str());
    assert!(
        agent["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert_eq!(
        (agent["last_login"].clone(), agent["connected"].clone()),
        (Value::Null, json!(false))
    );
    let mut ws = hub.connect("alice", 1).await;
    let list = get(addr, &alice, "/api/v1/agents").await.json();
    assert!(
        list["agents"][0]["last_login"].as_i64().unwrap() > T0,
        "{list}"
    );
    assert_eq!(list["agents"][0]["connected"], true);
    // bob sees none of alice's agents.
    let bob = session(addr, "bob").await;
    assert_eq!(
        get(addr, &bob, "/api/v1/agents").await.json()["agents"],
        json!([])
    );
    let id = list["agents"][0]["id"].as_str().unwrap().to_owned();
    let by_bob = call(addr, &bob, "DELETE", &format!("/api/v1/agents/{id}"), None).await;
    assert_eq!(by_bob.status, 404, "{}", by_bob.body);
    let revoked = call(
        addr,
        &alice,
        "DELETE",
        &format!("/api/v1/agents/{id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["kicked"].as_array().unwrap().len(), 1);
    match ws.next_event().await {
        Event::Close(code) => assert_eq!(code, Some(4403)),
        other => panic!("expected the 4403 close, got {other:?}"),
    }
}

#[tokio::test]
async fn the_page_files_carry_an_etag_and_a_matching_revalidation_gets_304() {
    let hub = TestHub::start().await;
    let addr = hub.addr();
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist");
    for (path, file) in [
        ("/web/", "index.html"),
        ("/web/app.js", "app.js"),
        ("/web/app.css", "app.css"),
    ] {
        let fetch = |headers: Vec<(&'static str, String)>| async move {
            http_client::request(addr, "GET", path, &headers, Vec::new(), WAIT)
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        };
        let full = fetch(Vec::new()).await;
        assert_eq!(full.status, 200, "{path}");
        assert_eq!(full.body, std::fs::read(dist.join(file)).unwrap(), "{path}");
        let etag = full.headers["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
            "{path}: {etag}"
        );
        let again = fetch(vec![("if-none-match", etag.clone())]).await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty(), "{path}: a 304 has no body");
        assert_eq!(again.headers["etag"], etag.as_str(), "{path}");
        assert_eq!(again.headers["cache-control"], "no-cache", "{path}");
        // A list that holds it (weak or not) matches too; another tag does not.
        let listed = fetch(vec![("if-none-match", format!("\"0\", W/{etag}"))]).await;
        assert_eq!(listed.status, 304, "{path}");
        let other = fetch(vec![("if-none-match", "\"0123\"".to_owned())]).await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.body, full.body, "{path}");
    }
    // Each file has its own tag.
    let tags: std::collections::BTreeSet<String> = futures_util::future::join_all(
        ["/web/", "/web/app.js", "/web/app.css"].map(|path| async move {
            let r = http_client::request(addr, "GET", path, &[], Vec::new(), WAIT)
                .await
                .unwrap();
            r.headers["etag"].to_str().unwrap().to_owned()
        }),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(tags.len(), 3);
}
