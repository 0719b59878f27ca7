//! Message parsing and writing: every action both ways, and malformed frames.

use super::*;

const SEQ: &str = "bb359680683d11e78000000000000000";
const T: &str = "bb359680683d11e78080808080808080";

fn frame(action: &str, payload: Value) -> String {
    json!({"v": 1, "action": action, "seq": SEQ, "irt": null, "payload": payload}).to_string()
}

fn refused(text: &str) -> FrameError {
    match Message::parse(text) {
        Err(e) => e,
        Ok(m) => panic!("accepted {text}: {m:?}"),
    }
}

fn round_trip(m: &Message) {
    let back = Message::parse(&m.to_text()).expect("own output parses");
    assert_eq!(&back, m);
}

#[test]
fn every_action_round_trips() {
    let t = TimeUuid::parse(T).unwrap();
    let bodies = vec![
        Body::GenericResponse(GenericResponse {
            status: Status::OK,
            error: 0,
            reason: None,
        }),
        Body::GenericResponse(GenericResponse {
            status: Status::NOT_FOUND,
            error: 7,
            reason: Some("why".into()),
        }),
        Body::RequestData(RequestData {
            uri: Uri::parse("cpu.user").unwrap(),
            start: Some(TimeUuid::MIN),
            end: None,
            count: Some(200),
        }),
        Body::HookToUri(UriPayload {
            uri: Uri::parse("friend:host1.cpu").unwrap(),
        }),
        Body::UnhookFromUri(UriPayload {
            uri: Uri::parse("a").unwrap(),
        }),
        Body::SendDataInterval(DataInterval {
            uri: Uri::parse("cpu.user").unwrap(),
            kind: Kind::Datapoint,
            start: TimeUuid::MIN,
            end: TimeUuid::MAX,
            data: vec![(t, "1.5".into()), (TimeUuid::MIN, "2".into())],
        }),
        Body::SendMultiData(MultiData {
            t,
            uris: vec![
                MultiItem {
                    uri: Uri::parse("a.ds").unwrap(),
                    kind: Kind::Datasource,
                    content: "text".into(),
                },
                MultiItem {
                    uri: Uri::parse("a.dp").unwrap(),
                    kind: Kind::Datapoint,
                    content: "333".into(),
                },
            ],
        }),
        Body::SendDpData(DpData {
            uri: Uri::parse("cpu.user").unwrap(),
            t,
            content: "14.63".into(),
        }),
        Body::SendDsData(DsData {
            uri: Uri::parse("host.occupation").unwrap(),
            t,
            content: "ñ text\n".into(),
        }),
        Body::SendDsInfo(DsInfo {
            uri: Uri::parse("pkg.cpu").unwrap(),
            supplies: Some(vec!["all.user".into(), "ldavg.1min".into()]),
        }),
        Body::SendDsInfo(DsInfo {
            uri: Uri::parse("pkg.cpu").unwrap(),
            supplies: None,
        }),
    ];
    let mut seen = std::collections::HashSet::new();
    for body in bodies {
        seen.insert(body.action());
        round_trip(&Message::new(Some(t), body.clone()));
        round_trip(&Message::new(None, body));
    }
    assert_eq!(seen.len(), Action::ALL.len(), "every action is covered");
}

#[test]
fn writes_the_envelope_like_the_python_agent() {
    let m = Message {
        seq: TimeUuid::parse(SEQ).unwrap(),
        irt: None,
        body: Body::HookToUri(UriPayload {
            uri: Uri::parse("my_friend:host1.cpu.system").unwrap(),
        }),
    };
    assert_eq!(
        m.to_json(),
        json!({"v":1,"action":"hook_to_uri","seq":SEQ,"irt":null,
               "payload":{"uri":"my_friend:host1.cpu.system"}})
    );
}

#[test]
fn reads_a_python_request_data_with_extreme_bounds() {
    let text = frame(
        "request_data",
        json!({"uri":"cpu.user","start":"00000000000010008080808080808080",
               "end":"ffffffffffff1fffbf7f7f7f7f7f7f7f","count":200}),
    );
    let m = Message::parse(&text).unwrap();
    let Body::RequestData(r) = m.body else {
        panic!("{m:?}")
    };
    assert_eq!(r.start, Some(TimeUuid::MIN));
    assert_eq!(r.end, Some(TimeUuid::MAX));
    assert_eq!(r.count, Some(200));
}

#[test]
fn dashed_seq_is_accepted_and_datapoints_are_canonicalised() {
    let text = json!({"v":1,"action":"send_dp_data","seq":"bb359680-683d-11e7-8000-000000000000",
        "irt":null,"payload":{"uri":"a","t":T,"content":" +1.3E+3 "}})
    .to_string();
    let m = Message::parse(&text).unwrap();
    assert_eq!(m.seq.hex(), SEQ);
    let Body::SendDpData(d) = m.body else {
        panic!()
    };
    assert_eq!(d.content, "1.3E+3");
}

#[test]
fn malformed_envelopes_are_4400_350000() {
    let cases: Vec<(String, &str, bool)> = vec![
        ("not json".into(), "not JSON", false),
        ("".into(), "not JSON", false),
        ("[1,2]".into(), "not a JSON object", false),
        ("\"text\"".into(), "not a JSON object", false),
        (
            json!({"v":1,"action":"hook_to_uri","payload":{}}).to_string(),
            "`seq` is missing",
            false,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":5,"payload":{}}).to_string(),
            "`seq` is not a string",
            false,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":"0b5ad3e4d8a94f8e9e3ac9b1c0b1a1a1"})
                .to_string(),
            "not a version-1",
            false,
        ),
        (
            json!({"action":"hook_to_uri","seq":SEQ}).to_string(),
            "`v` is missing",
            true,
        ),
        (
            json!({"v":-1,"action":"hook_to_uri","seq":SEQ}).to_string(),
            "`v` is not an integer",
            true,
        ),
        (
            json!({"v":"1","action":"hook_to_uri","seq":SEQ}).to_string(),
            "`v` is not an integer",
            true,
        ),
        (
            json!({"v":1.5,"action":"hook_to_uri","seq":SEQ}).to_string(),
            "`v` is not an integer",
            true,
        ),
        (
            json!({"v":1,"seq":SEQ}).to_string(),
            "`action` is missing",
            true,
        ),
        (
            json!({"v":1,"action":7,"seq":SEQ}).to_string(),
            "`action` is not a string",
            true,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ,"irt":"zz"}).to_string(),
            "`irt`",
            true,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ,"irt":3}).to_string(),
            "`irt` is neither",
            true,
        ),
    ];
    for (text, needle, has_seq) in cases {
        let e = refused(&text);
        assert_eq!(e.status, Status::PROTOCOL_ERROR, "{text}");
        assert_eq!(e.error, error::MALFORMED_MESSAGE, "{text}");
        assert!(e.reason.starts_with("Malformed message"), "{}", e.reason);
        assert!(e.reason.contains(needle), "{text}: {}", e.reason);
        assert_eq!(e.seq.is_some(), has_seq, "{text}");
        // The answer is a generic_response in reply to the seq, when known.
        let reply = e.reply();
        assert_eq!(reply.irt, e.seq);
        assert!(
            matches!(reply.body, Body::GenericResponse(ref r) if r.status == Status::PROTOCOL_ERROR)
        );
    }
}

#[test]
fn other_versions_and_unknown_actions() {
    let e =
        refused(&json!({"v":2,"action":"hook_to_uri","seq":SEQ,"payload":{"uri":"a"}}).to_string());
    assert_eq!(
        (e.status, e.error),
        (Status::PROTOCOL_ERROR, error::UNSUPPORTED_VERSION)
    );
    assert!(e.reason.starts_with("Unsupported protocol version"));
    let e = refused(&frame("delete_everything", json!({})));
    assert_eq!(
        (e.status, e.error),
        (Status::PROTOCOL_ERROR, error::UNSUPPORTED_ACTION)
    );
    assert!(
        e.reason
            .contains("unsupported action \"delete_everything\"")
    );
    assert_eq!(e.seq.map(|s| s.hex()).as_deref(), Some(SEQ));
}

#[test]
fn bad_payloads_name_the_field() {
    let big = "x".repeat(crate::value::MAX_DATASOURCE_BYTES + 1);
    let cases = vec![
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ}).to_string(),
            "`payload` is missing",
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ,"payload":[1]}).to_string(),
            "`payload` is not an object",
        ),
        (frame("hook_to_uri", json!({})), "`uri` is missing"),
        (
            frame("hook_to_uri", json!({"uri": 3})),
            "`uri` is not a string",
        ),
        (frame("hook_to_uri", json!({"uri": "a..b"})), "invalid uri"),
        (
            frame("unhook_from_uri", json!({"uri": "a b"})),
            "invalid uri",
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":SEQ})),
            "`content` is missing",
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":"x","content":""})),
            "`t`",
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":T,"content":big})),
            "over the limit",
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":T,"content":5})),
            "`content` is not a string",
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":"NaN"})),
            "not finite",
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":"1,1"})),
            "not a decimal",
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":null})),
            "not a string",
        ),
        (
            frame("send_multi_data", json!({"t":T,"uris":{}})),
            "`uris` is not a list",
        ),
        (
            frame(
                "send_multi_data",
                json!({"t":T,"uris":[{"uri":"a","type":"x","content":"1"}]}),
            ),
            "`uris[0].type`",
        ),
        (
            frame(
                "send_multi_data",
                json!({"t":T,"uris":[{"uri":"a","type":"p"}]}),
            ),
            "`uris[0].content` is missing",
        ),
        (
            frame("send_multi_data", json!({"t":T,"uris":[3]})),
            "`uris[0]` is not an object",
        ),
        (
            frame(
                "send_ds_info",
                json!({"uri":"a","supplies":["ok","not ok"]}),
            ),
            "`supplies[1]`",
        ),
        (
            frame("send_ds_info", json!({"uri":"a","supplies":["u:x"]})),
            "not a local uri",
        ),
        (
            frame("send_ds_info", json!({"uri":"a","supplies":"x"})),
            "`supplies` is neither",
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":null,"count":null}),
            ),
            "`count` is required",
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":T,"count":0}),
            ),
            "`count` is neither",
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":T,"count":-3}),
            ),
            "`count` is neither",
        ),
        (
            frame("generic_response", json!({"status":0,"error":0})),
            "`status`",
        ),
        (
            frame("generic_response", json!({"status":4200,"error":-1})),
            "`error`",
        ),
        (
            frame(
                "generic_response",
                json!({"status":4200,"error":0,"reason":5}),
            ),
            "`reason`",
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":"a","start":T,"end":T,"data":[]}),
            ),
            "`uri` is not an object",
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"q"},"start":T,"end":T,"data":[]}),
            ),
            "`uri.type`",
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"p"},"start":T,"end":T,"data":[[T]]}),
            ),
            "`data[0]` is not a [t, value] pair",
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"p"},"start":T,"end":T,"data":[[T,"abc"]]}),
            ),
            "`data[0][1]`",
        ),
    ];
    for (text, needle) in cases {
        let e = refused(&text);
        assert_eq!(e.status, Status::PROTOCOL_ERROR, "{text}");
        assert!(e.reason.contains(needle), "{text}: {}", e.reason);
        assert_eq!(e.seq.map(|s| s.hex()).as_deref(), Some(SEQ), "{text}");
    }
}

#[test]
fn multi_data_datapoint_errors_carry_their_own_number() {
    let e = refused(&frame(
        "send_multi_data",
        json!({"t":T,"uris":[{"uri":"a","type":"p","content":"Infinity"}]}),
    ));
    assert_eq!(e.error, error::MULTI_INVALID_CONTENT);
}

#[test]
fn extra_keys_are_ignored() {
    let text = json!({"v":1,"action":"send_multi_data","seq":SEQ,"irt":null,"extra":1,
        "payload":{"t":T,"more":true,"uris":[{"uri":"a","type":"d","content":"x","junk":[]}]}})
    .to_string();
    let m = Message::parse(&text).unwrap();
    assert!(matches!(m.body, Body::SendMultiData(ref d) if d.uris.len() == 1));
}

#[test]
fn who_sends_what() {
    assert!(Action::HookToUri.sent_by_agent() && !Action::HookToUri.sent_by_server());
    assert!(Action::SendDataInterval.sent_by_server() && !Action::SendDataInterval.sent_by_agent());
    assert!(Action::SendMultiData.sent_by_server() && Action::SendMultiData.sent_by_agent());
    for a in Action::ALL {
        assert_eq!(Action::from_name(a.as_str()), Some(a));
    }
}
