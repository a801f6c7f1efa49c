//! The codec against the ABI's golden vectors (sdk/abi/testdata/golden):
//! every value encodes to its hex and every hex decodes to its value, for
//! all six types, plus the rejections package abi makes.

use std::borrow::Cow;
use std::path::PathBuf;

use wingate::codec::*;
use wingate::json::{self, Value};
use wingate::*;

fn golden(name: &str) -> Vec<(String, Value, Vec<u8>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../abi/testdata/golden").join(name);
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
    let v = json::parse(&b).unwrap();
    let cases: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c.get("name").unwrap().as_str().unwrap().to_string();
            let hex = c.get("hex").unwrap().as_str().unwrap();
            (name, c.get("value").unwrap().clone(), unhex(hex))
        })
        .collect();
    assert!(cases.len() >= 4, "{}: {} cases", name, cases.len());
    cases
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn s<'a>(v: &'a Value, k: &str) -> Cow<'a, str> {
    Cow::Borrowed(v.get(k).unwrap().as_str().unwrap())
}
fn n(v: &Value, k: &str) -> u32 {
    v.get(k).unwrap().as_u32().unwrap()
}
fn strs(v: &Value, k: &str) -> Vec<String> {
    v.get(k).unwrap().as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

#[test]
fn golden_cache_request() {
    for (name, v, hex) in golden("cache_request.json") {
        let want = CacheRequest { method: s(&v, "method"), route: s(&v, "route"), path: s(&v, "path"), query: s(&v, "query"), user: s(&v, "user") };
        let mut out = Vec::new();
        encode_cache_request(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_cache_request(&hex).unwrap(), want, "{}: decode", name);
    }
}

#[test]
fn golden_cache_decision() {
    for (name, v, hex) in golden("cache_decision.json") {
        let want = CacheDecision {
            action: if s(&v, "action") == "lookup" { Action::Lookup } else { Action::Bypass },
            key: s(&v, "key").into_owned(),
            ttl_s: n(&v, "ttl_s"),
            scope: if s(&v, "scope") == "user" { Scope::User } else { Scope::Global },
            stale_s: n(&v, "stale_s"),
            tags: strs(&v, "tags"),
        };
        let mut out = Vec::new();
        encode_cache_decision(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_cache_decision(&hex).unwrap(), want, "{}: decode", name);
    }
}

fn purpose(v: &str) -> Purpose {
    match v {
        "chat" => Purpose::Chat,
        "assessment" => Purpose::Assessment,
        _ => panic!("purpose {}", v),
    }
}

fn tier(v: &str) -> Tier {
    match v {
        "economy" => Tier::Economy,
        "standard" => Tier::Standard,
        "premium" => Tier::Premium,
        _ => panic!("tier {}", v),
    }
}

fn role(v: &str) -> Role {
    match v {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        _ => panic!("role {}", v),
    }
}

#[test]
fn golden_route_request() {
    for (name, v, hex) in golden("route_request.json") {
        let want = RouteRequest { message: s(&v, "message"), purpose: purpose(&s(&v, "purpose")), history_turns: n(&v, "history_turns"), history_tokens: n(&v, "history_tokens") };
        let mut out = Vec::new();
        encode_route_request(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_route_request(&hex).unwrap(), want, "{}: decode", name);
    }
}

#[test]
fn golden_route_decision() {
    for (name, v, hex) in golden("route_decision.json") {
        let want = RouteDecision { tier: tier(&s(&v, "tier")), score: v.get("score").unwrap().as_f64().unwrap(), reason: s(&v, "reason").into_owned() };
        let mut out = Vec::new();
        encode_route_decision(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_route_decision(&hex).unwrap(), want, "{}: decode", name);
    }
}

#[test]
fn golden_compress_request() {
    for (name, v, hex) in golden("compress_request.json") {
        let messages = v
            .get("messages")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message { id: s(m, "id"), role: role(&s(m, "role")), tokens: n(m, "tokens"), text: s(m, "text") })
            .collect();
        let want = CompressRequest { budget_tokens: n(&v, "budget_tokens"), query: s(&v, "query"), messages };
        let mut out = Vec::new();
        encode_compress_request(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_compress_request(&hex).unwrap(), want, "{}: decode", name);
    }
}

#[test]
fn golden_compress_decision() {
    for (name, v, hex) in golden("compress_decision.json") {
        let keep = v.get("keep").unwrap().as_array().unwrap().iter().map(|k| k.as_u32().unwrap()).collect();
        let want = CompressDecision { keep, summary: s(&v, "summary").into_owned(), tokens: n(&v, "tokens") };
        let mut out = Vec::new();
        encode_compress_decision(&mut out, &want);
        assert_eq!(out, hex, "{}: encode", name);
        assert_eq!(decode_compress_decision(&hex).unwrap(), want, "{}: decode", name);
    }
}

#[test]
fn rejects_what_package_abi_rejects() {
    let (_, _, good) = golden("cache_request.json").remove(0);
    // Every proper prefix is short; one more byte is trailing.
    for i in 0..good.len() {
        assert_eq!(decode_cache_request(&good[..i]), Err(DecodeError::Short), "prefix {}", i);
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(decode_cache_request(&long), Err(DecodeError::Trailing));
    // A string length past the end.
    assert_eq!(decode_cache_request(&[0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Short));
    // Enum out of range.
    assert_eq!(decode_route_request(&[0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::Enum));
    // A list count over the limit, and one the remaining bytes cannot hold.
    let mut c = vec![0, 0, 0, 0, 0, 0, 0, 0];
    c.extend_from_slice(&(MAX_LIST_LEN + 1).to_le_bytes());
    assert_eq!(decode_compress_request(&c), Err(DecodeError::TooLong));
    let mut c = vec![0, 0, 0, 0, 0, 0, 0, 0];
    c.extend_from_slice(&2u32.to_le_bytes());
    c.extend_from_slice(&[0; 25]);
    assert_eq!(decode_compress_request(&c), Err(DecodeError::Short));
    // A NaN or out-of-range score.
    for bad in [f64::NAN, -0.5, 1.5] {
        let mut out = Vec::new();
        encode_route_decision(&mut out, &RouteDecision { tier: Tier::Economy, score: bad, reason: String::new() });
        assert_eq!(decode_route_decision(&out), Err(DecodeError::Score));
    }
}

#[test]
fn invalid_utf8_passes_through_as_replacement() {
    let mut b = Vec::new();
    encode_route_request(&mut b, &RouteRequest { message: "ab".into(), ..Default::default() });
    b[4] = 0xff;
    let r = decode_route_request(&b).unwrap();
    assert_eq!(r.message, "\u{fffd}b");
}
