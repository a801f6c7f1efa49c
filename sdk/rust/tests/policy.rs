//! The dispatcher through the same encoding the host uses.

use wingate::*;

#[derive(Default)]
struct State {
    prefix: String,
    calls: u32,
}

fn configure(s: &mut State, config: &[u8]) -> Result<(), Error> {
    let v = json::parse(config)?;
    s.prefix = v.get("prefix").and_then(|p| p.as_str()).ok_or("config: prefix is required")?.to_string();
    Ok(())
}

fn cache(s: &mut State, req: &CacheRequest) -> Result<CacheDecision, Error> {
    s.calls += 1;
    if req.path == "/fail" {
        return Err("refused".into());
    }
    Ok(CacheDecision { action: Action::Lookup, key: format!("{}{}", s.prefix, req.path), ttl_s: 60, tags: vec![format!("n:{}", s.calls)], ..Default::default() })
}

fn route(_: &mut State, req: &RouteRequest) -> Result<RouteDecision, Error> {
    Ok(RouteDecision { tier: Tier::Standard, score: if req.message.is_empty() { 2.0 } else { 0.5 }, reason: req.message.to_string() })
}

fn policy() -> Policy<State> {
    Policy::new(State::default()).on_init(configure).cache(cache).route(route)
}

#[test]
fn kinds_follow_handlers() {
    assert_eq!(policy().kinds(), 0x06);
    assert_eq!(Policy::new(()).kinds(), 0);
}

#[test]
fn init_errors_reach_the_host() {
    let mut p = policy();
    match p.call_init(b"{}") {
        Err(CallError::Policy(m)) => assert_eq!(m, "config: prefix is required"),
        other => panic!("{:?}", other),
    }
    match p.call_init(b"{") {
        Err(CallError::Policy(m)) => assert!(m.starts_with("json: "), "{}", m),
        other => panic!("{:?}", other),
    }
    p.call_init(br#"{"prefix": "k:"}"#).unwrap();
}

#[test]
fn handlers_run_through_the_encoding() {
    let mut p = policy();
    p.call_init(br#"{"prefix": "k:"}"#).unwrap();
    let req = CacheRequest { method: "GET".into(), path: "/a".into(), ..Default::default() };
    let d = p.call_cache(&req).unwrap();
    assert_eq!(d.key, "k:/a");
    // State persists between calls of one instance.
    assert_eq!(p.call_cache(&req).unwrap().tags, vec!["n:2".to_string()]);
    assert_eq!(p.call_cache(&CacheRequest { path: "/fail".into(), ..Default::default() }), Err(CallError::Policy("refused".into())));
    // A decision the host would refuse is refused here too.
    assert_eq!(p.call_route(&RouteRequest::default()), Err(CallError::Decode(DecodeError::Score)));
    assert_eq!(p.call_route(&RouteRequest { message: "hi".into(), ..Default::default() }).unwrap().reason, "hi");
    // No compress handler: an error status, as the host sees it.
    assert_eq!(p.call_compress(&CompressRequest::default()), Err(CallError::Policy("no handler registered for this kind".into())));
}

#[test]
fn raw_dispatch_rejects_bad_input_and_kinds() {
    let mut p = policy();
    p.call_init(br#"{"prefix": ""}"#).unwrap();
    assert_eq!(p.decide(9, b""), b"\x01unknown kind 9");
    assert_eq!(p.decide(1, b"\x01\x00"), b"\x01abi: input too short");
    let mut input = Vec::new();
    codec::encode_cache_request(&mut input, &CacheRequest::default());
    input.push(0);
    assert_eq!(p.decide(1, &input), b"\x01abi: trailing bytes after the last field");
}
