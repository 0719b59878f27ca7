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
            json!({"v":1,"action":5,"seq":"zz"}).to_string(),
            "`action` is not a string",
            false,
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
    // The answer echoes the version it refuses.
    assert_eq!(e.reply_json()["v"], json!(2));
    assert_eq!(e.reply_json()["irt"], json!(SEQ));
    let e = refused(&frame("delete_everything", json!({})));
    assert_eq!(
        (e.status, e.error),
        (Status::PROTOCOL_ERROR, error::UNSUPPORTED_ACTION)
    );
    assert_eq!(e.error, 200_000);
    assert!(
        e.reason
            .contains("unsupported action \"delete_everything\"")
    );
    assert_eq!(e.seq.map(|s| s.hex()).as_deref(), Some(SEQ));
    assert_eq!(e.reply_json()["v"], json!(1));
}

#[test]
fn malformed_answers_echo_an_integer_v_or_0() {
    for (text, v) in [
        (json!({"action":"a","seq":SEQ}).to_string(), json!(0)),
        (
            json!({"v":"1","action":"a","seq":SEQ}).to_string(),
            json!(0),
        ),
        (
            json!({"v":-4,"action":"a","seq":SEQ}).to_string(),
            json!(-4),
        ),
        (json!({"v":7,"action":3,"seq":SEQ}).to_string(), json!(7)),
        ("[]".to_owned(), json!(0)),
    ] {
        let e = refused(&text);
        assert_eq!(e.error, error::MALFORMED_MESSAGE, "{text}");
        assert_eq!(e.reply_json()["v"], v, "{text}");
    }
}

#[test]
fn an_agent_must_send_irt_and_only_agent_actions() {
    let no_irt = json!({"v":1,"action":"hook_to_uri","seq":SEQ,"payload":{"uri":"a"}}).to_string();
    // Either side's reading takes a missing irt as null ...
    assert_eq!(Message::parse(&no_irt).unwrap().irt, None);
    // ... a server's reading of an agent's frame does not.
    let e = Message::parse_from_agent(&no_irt).unwrap_err();
    assert_eq!(
        (e.status, e.error),
        (Status::PROTOCOL_ERROR, error::HOOK_PAYLOAD)
    );
    assert!(e.reason.contains("`irt` is missing"), "{}", e.reason);
    for (irt, action, code) in [
        (json!("zz"), "request_data", error::DATA_PAYLOAD),
        (json!(3), "send_ds_info", error::INFO_PAYLOAD),
        (
            json!("0b5ad3e4d8a94f8e9e3ac9b1c0b1a1a1"),
            "send_ds_data",
            error::DS_PAYLOAD,
        ),
    ] {
        let text = json!({"v":1,"action":action,"seq":SEQ,"irt":irt,"payload":{}}).to_string();
        for e in [
            refused(&text),
            Message::parse_from_agent(&text).unwrap_err(),
        ] {
            assert_eq!(e.error, code, "{text}");
            assert!(e.reason.contains("`irt`"), "{}", e.reason);
            assert_eq!(e.seq.map(|s| s.hex()).as_deref(), Some(SEQ));
        }
    }
    // Actions only servers send are unsupported from an agent, whatever the payload.
    for action in ["generic_response", "send_data_interval"] {
        let text = json!({"v":1,"action":action,"seq":SEQ,"payload":5}).to_string();
        let e = Message::parse_from_agent(&text).unwrap_err();
        assert_eq!(e.error, error::UNSUPPORTED_ACTION, "{action}");
        assert!(e.reason.starts_with("unsupported action"), "{}", e.reason);
        assert_eq!(refused(&text).error, error::INVALID_PAYLOAD, "{action}");
    }
    let ok = frame("send_multi_data", json!({"t":T,"uris":[]}));
    assert!(Message::parse_from_agent(&ok).is_ok());
}

#[test]
fn bad_payloads_name_the_field_and_carry_the_actions_number() {
    let big = "x".repeat(crate::value::MAX_DATASOURCE_BYTES + 1);
    let cases = vec![
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ}).to_string(),
            "`payload` is missing",
            error::HOOK_PAYLOAD,
        ),
        (
            json!({"v":1,"action":"hook_to_uri","seq":SEQ,"payload":[1]}).to_string(),
            "`payload` is not an object",
            error::HOOK_PAYLOAD,
        ),
        (
            frame("hook_to_uri", json!({})),
            "`uri` is missing",
            error::HOOK_PAYLOAD,
        ),
        (
            frame("hook_to_uri", json!({"uri": 3})),
            "`uri` is not a string",
            error::HOOK_INVALID_URI,
        ),
        (
            frame("hook_to_uri", json!({"uri": "a..b"})),
            "invalid uri",
            error::HOOK_INVALID_URI,
        ),
        (
            frame("unhook_from_uri", json!({"uri": "a b"})),
            "invalid uri",
            error::UNHOOK_INVALID_URI,
        ),
        (
            frame("unhook_from_uri", json!({})),
            "`uri` is missing",
            error::UNHOOK_PAYLOAD,
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":SEQ})),
            "`content` is missing",
            error::DS_PAYLOAD,
        ),
        (
            frame("send_ds_data", json!({"uri":"a..b","t":"x","content":""})),
            "`t`",
            error::DS_PAYLOAD,
        ),
        (
            frame("send_ds_data", json!({"uri":"a..b","t":T,"content":5})),
            "invalid uri",
            error::DS_INVALID_URI,
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":T,"content":big})),
            "over the limit",
            error::DS_INVALID_CONTENT,
        ),
        (
            frame("send_ds_data", json!({"uri":"a","t":T,"content":5})),
            "`content` is not a string",
            error::DS_INVALID_CONTENT,
        ),
        (
            frame("send_dp_data", json!({"t":T,"content":"1"})),
            "`uri` is missing",
            error::DP_PAYLOAD,
        ),
        (
            frame("send_dp_data", json!({"uri":"a:","t":T,"content":"1"})),
            "`uri`",
            error::DP_INVALID_URI,
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":"NaN"})),
            "not finite",
            error::DP_INVALID_CONTENT,
        ),
        (
            frame(
                "send_dp_data",
                json!({"uri":"a","t":T,"content":"-Infinity"}),
            ),
            "not finite",
            error::DP_INVALID_CONTENT,
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":"1,1"})),
            "not a decimal",
            error::DP_INVALID_CONTENT,
        ),
        (
            frame("send_dp_data", json!({"uri":"a","t":T,"content":null})),
            "not a string",
            error::DP_INVALID_CONTENT,
        ),
        (
            frame("send_multi_data", json!({"t":T})),
            "`uris` is missing",
            error::MULTI_PAYLOAD,
        ),
        (
            frame("send_multi_data", json!({"t":"x","uris":[]})),
            "`t`",
            error::MULTI_PAYLOAD,
        ),
        (
            frame("send_multi_data", json!({"t":T,"uris":{}})),
            "`uris` is not a list",
            error::MULTI_INVALID_URIS,
        ),
        (
            frame(
                "send_multi_data",
                json!({"t":T,"uris":[{"uri":"a","type":"x","content":"1"}]}),
            ),
            "`uris[0].type`",
            error::MULTI_INVALID_URIS,
        ),
        (
            frame(
                "send_multi_data",
                json!({"t":T,"uris":[{"uri":"a","type":"p"}]}),
            ),
            "`uris[0].content` is missing",
            error::MULTI_INVALID_URIS,
        ),
        (
            frame(
                "send_multi_data",
                json!({"t":T,"uris":[{"uri":"a","type":"p","content":"Infinity"}]}),
            ),
            "`uris[0].content`",
            error::MULTI_INVALID_URIS,
        ),
        (
            frame("send_multi_data", json!({"t":T,"uris":[3]})),
            "`uris[0]` is not an object",
            error::MULTI_INVALID_URIS,
        ),
        (
            frame("send_ds_info", json!({"uri":"a"})),
            "`supplies` is missing",
            error::INFO_PAYLOAD,
        ),
        (
            frame("send_ds_info", json!({"uri":"a b","supplies":null})),
            "invalid uri",
            error::INFO_INVALID_URI,
        ),
        (
            frame(
                "send_ds_info",
                json!({"uri":"a","supplies":["ok","not ok"]}),
            ),
            "`supplies[1]`",
            error::INFO_INVALID_SUPPLY,
        ),
        (
            frame("send_ds_info", json!({"uri":"a","supplies":["u:x"]})),
            "not a local uri",
            error::INFO_INVALID_SUPPLY,
        ),
        (
            frame("send_ds_info", json!({"uri":"a","supplies":"x"})),
            "`supplies` is neither",
            error::INFO_INVALID_SUPPLIES,
        ),
        (
            frame("request_data", json!({"uri":"a","start":T,"end":T})),
            "`count` is missing",
            error::DATA_PAYLOAD,
        ),
        (
            frame("request_data", json!({"uri":"a","end":T,"count":1})),
            "`start` is missing",
            error::DATA_PAYLOAD,
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a b","start":T,"end":"x","count":1}),
            ),
            "`end`",
            error::DATA_PAYLOAD,
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a b","start":T,"end":T,"count":"x"}),
            ),
            "invalid uri",
            error::DATA_INVALID_URI,
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":null,"count":null}),
            ),
            "`count` is required",
            error::DATA_COUNT_OR_INTERVAL,
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":T,"count":-3}),
            ),
            "`count` is neither",
            error::DATA_INVALID_COUNT,
        ),
        (
            frame(
                "request_data",
                json!({"uri":"a","start":T,"end":T,"count":1.5}),
            ),
            "`count` is neither",
            error::DATA_INVALID_COUNT,
        ),
        (
            frame("generic_response", json!({"status":0,"error":0})),
            "`status`",
            error::INVALID_PAYLOAD,
        ),
        (
            frame("generic_response", json!({"status":4200,"error":-1})),
            "`error`",
            error::INVALID_PAYLOAD,
        ),
        (
            frame(
                "generic_response",
                json!({"status":4200,"error":0,"reason":5}),
            ),
            "`reason`",
            error::INVALID_PAYLOAD,
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":"a","start":T,"end":T,"data":[]}),
            ),
            "`uri` is not an object",
            error::INVALID_PAYLOAD,
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"q"},"start":T,"end":T,"data":[]}),
            ),
            "`uri.type`",
            error::INVALID_PAYLOAD,
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"p"},"start":T,"end":T,"data":[[T]]}),
            ),
            "`data[0]` is not a [t, value] pair",
            error::INVALID_PAYLOAD,
        ),
        (
            frame(
                "send_data_interval",
                json!({"uri":{"uri":"a","type":"p"},"start":T,"end":T,"data":[[T,"abc"]]}),
            ),
            "`data[0][1]`",
            error::INVALID_PAYLOAD,
        ),
    ];
    for (text, needle, code) in cases {
        let e = refused(&text);
        assert_eq!(
            (e.status, e.error),
            (Status::PROTOCOL_ERROR, code),
            "{text}: {}",
            e.reason
        );
        assert!(e.reason.starts_with("protocol error"), "{}", e.reason);
        assert!(e.reason.contains(needle), "{text}: {}", e.reason);
        assert_eq!(e.seq.map(|s| s.hex()).as_deref(), Some(SEQ), "{text}");
    }
}

#[test]
fn request_data_count_zero_is_unlimited_and_needs_no_bounds() {
    for payload in [
        json!({"uri":"a","start":null,"end":null,"count":0}),
        json!({"uri":"a","start":T,"end":T,"count":0}),
    ] {
        let m = Message::parse_from_agent(&frame("request_data", payload)).unwrap();
        let Body::RequestData(r) = m.body else {
            panic!("{m:?}")
        };
        assert_eq!(r.count, Some(0));
    }
    let m = Message::parse_from_agent(&frame("send_ds_info", json!({"uri":"a","supplies":null})))
        .unwrap();
    assert!(matches!(m.body, Body::SendDsInfo(ref i) if i.supplies.is_none()));
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
