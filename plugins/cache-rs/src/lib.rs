//! Wingate's default cache policy in Rust: the same rules and decisions as
//! the Go policy in plugins/cache (package rules), checked on its case
//! files. Build with `wingate policy build plugins/cache-rs` (or
//! `go generate ./policies`, which builds it when cargo is installed).
//!
//! Configuration: `{"rules": [...]}`, each rule a route template with a
//! method (default GET), an action ("lookup", the default, or "purge"), a
//! TTL, a scope ("user" or "global"), a stale window, purge tags with
//! `{user}` and `{param}` placeholders, and `ignore_query`. Empty
//! configuration gives the built-in defaults.

use wingate::fast::{self, CacheRequestBytes, CacheWriter, Parts};
use wingate::json::{self, Value};
use wingate::{Error, Policy, Scope};

/// One part of a tag template.
#[derive(Debug, Clone)]
enum Part {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// The request's user.
    User,
    /// The path's segment number index; prefix, when the route's segments
    /// before it are constants, is those segments with their slashes: a
    /// path that starts with it has the segment right after it.
    Seg { index: usize, prefix: Option<Vec<u8>> },
}

/// One configured rule, compiled.
#[derive(Debug, Clone)]
struct Rule {
    route: Vec<u8>,
    method: Vec<u8>,
    purge: bool,
    ttl_s: u32,
    scope: Scope,
    stale_s: u32,
    ignore_query: bool,
    /// Each tag's parts.
    tags: Vec<Tag>,
}

/// A compiled tag: its parts, and for the usual shape (a literal, a path
/// segment, a literal) the same as straight-line fields.
#[derive(Debug, Clone)]
struct Tag {
    parts: Vec<Part>,
    /// (literal before, segment index, route prefix, literal after) when
    /// the tag has exactly one placeholder, a segment after constant ones.
    simple: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

/// The compiled configuration: rules by the length of their route.
#[derive(Default)]
pub struct Rules {
    by_len: Vec<Vec<Rule>>,
    configured: bool,
    /// Scratch for canonical_query, kept between decisions.
    pairs: Vec<(usize, usize)>,
}

const DEFAULTS: &str = r#"{"rules": [
  {"route": "/api/challenges", "ttl_s": 1800, "scope": "global", "stale_s": 300, "tags": ["challenges"]},
  {"route": "/api/challenges/:id", "ttl_s": 1800, "scope": "global", "stale_s": 300, "tags": ["challenges", "challenge:{id}"]},
  {"route": "/api/users/:id/reputation", "ttl_s": 900, "scope": "user", "stale_s": 60, "tags": ["user:{id}"]},
  {"route": "/api/users/:id/matches", "ttl_s": 300, "scope": "user", "stale_s": 30, "tags": ["user:{id}:location", "user:{id}:matches"]},
  {"route": "/api/users/:id/location", "ttl_s": 3600, "scope": "user", "tags": ["user:{id}:location"]},
  {"route": "/api/challenges/:id/complete", "method": "POST", "action": "purge", "tags": ["user:{user}"]},
  {"route": "/api/users/:id/location", "method": "PUT", "action": "purge", "tags": ["user:{id}:location"]}
]}"#;

fn field_str<'a>(v: &'a Value, i: usize, k: &str) -> Result<Option<&'a str>, Error> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("cache policy: config: rule {}: {} must be a string", i, k).into()),
    }
}

fn field_u32(v: &Value, i: usize, k: &str) -> Result<u32, Error> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(0),
        Some(x) => x.as_u32().ok_or_else(|| format!("cache policy: config: rule {}: {} must be a whole number of seconds", i, k).into()),
    }
}

/// Compiles the configuration; empty (or null) gives the defaults.
pub fn parse(config: &[u8]) -> Result<Rules, Error> {
    let text = std::str::from_utf8(config).unwrap_or("x").trim();
    let doc = if text.is_empty() || text == "null" { json::parse(DEFAULTS.as_bytes())? } else { json::parse(config).map_err(|e| format!("cache policy: config: {}", e))? };
    let obj = doc.as_object().ok_or("cache policy: config: want an object")?;
    for (k, _) in obj {
        if k != "rules" {
            return Err(format!("cache policy: config: json: unknown field {:?}", k).into());
        }
    }
    let list = match doc.get("rules") {
        None | Some(Value::Null) => &[][..],
        Some(v) => v.as_array().ok_or("cache policy: config: rules must be a list")?,
    };
    let mut p = Rules { configured: true, ..Default::default() };
    for (i, r) in list.iter().enumerate() {
        let fields = r.as_object().ok_or_else(|| format!("cache policy: config: rule {} must be an object", i))?;
        for (k, _) in fields {
            if !matches!(k.as_str(), "route" | "method" | "action" | "ttl_s" | "scope" | "stale_s" | "tags" | "ignore_query") {
                return Err(format!("cache policy: config: json: unknown field {:?}", k).into());
            }
        }
        let route = field_str(r, i, "route")?.unwrap_or("").to_string();
        let method = field_str(r, i, "method")?.unwrap_or("").to_uppercase();
        let method = if method.is_empty() { "GET".to_string() } else { method };
        let action = field_str(r, i, "action")?.unwrap_or("");
        let scope_name = field_str(r, i, "scope")?.unwrap_or("");
        let ttl_s = field_u32(r, i, "ttl_s")?;
        let stale_s = field_u32(r, i, "stale_s")?;
        let ignore_query = match r.get("ignore_query") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().ok_or_else(|| format!("cache policy: config: rule {}: ignore_query must be true or false", i))?,
        };
        let tag_list: Vec<&str> = match r.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                let a = v.as_array().ok_or_else(|| format!("cache policy: config: rule {}: tags must be a list", i))?;
                let mut out = Vec::new();
                for t in a {
                    out.push(t.as_str().ok_or_else(|| format!("cache policy: config: rule {}: a tag must be a string", i))?);
                }
                out
            }
        };
        if !route.starts_with('/') {
            return Err(format!("cache policy: rule {}: route {:?} must start with /", i, route).into());
        }
        let purge = match action {
            "" | "lookup" => {
                if method != "GET" {
                    return Err(format!("cache policy: rule {}: only GET can be looked up", i).into());
                }
                if ttl_s == 0 {
                    return Err(format!("cache policy: rule {}: ttl_s must be positive", i).into());
                }
                false
            }
            "purge" => {
                if tag_list.is_empty() {
                    return Err(format!("cache policy: rule {}: a purge rule needs tags", i).into());
                }
                true
            }
            other => return Err(format!("cache policy: rule {}: unknown action {:?}", i, other).into()),
        };
        let scope = match scope_name {
            "user" => Scope::User,
            "global" | "" => {
                if !purge && scope_name.is_empty() {
                    return Err(format!("cache policy: rule {}: scope must be user or global", i).into());
                }
                Scope::Global
            }
            other => return Err(format!("cache policy: rule {}: unknown scope {:?}", i, other).into()),
        };
        let params: Vec<String> = route.split('/').map(|seg| if let Some(n) = seg.strip_prefix(':') { n.trim_end_matches('?').to_string() } else { String::new() }).collect();
        let mut tags = Vec::new();
        for t in &tag_list {
            let parts = parse_tag(t, &params).map_err(|e| format!("cache policy: rule {}: {}", i, e))?;
            let parts = compile_tag(&parts, &route, &params);
            tags.push(Tag { simple: simple_tag(&parts), parts });
        }
        if p.find(method.as_bytes(), route.as_bytes()).is_some() {
            return Err(format!("cache policy: rule {}: duplicate rule for {} {}", i, method, route).into());
        }
        let len = route.len();
        while p.by_len.len() <= len {
            p.by_len.push(Vec::new());
        }
        p.by_len[len].push(Rule { route: route.into_bytes(), method: method.into_bytes(), purge, ttl_s, scope, stale_s, ignore_query, tags });
    }
    Ok(p)
}

fn parse_tag(t: &str, params: &[String]) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    loop {
        let i = match rest.find('{') {
            None => {
                parts.push(rest.to_string());
                return Ok(parts);
            }
            Some(i) => i,
        };
        let j = rest[i..].find('}').ok_or_else(|| format!("tag {:?}: unclosed {{", t))?;
        let name = &rest[i + 1..i + j];
        if name != "user" && !params.iter().any(|p| p == name) {
            return Err(format!("tag {:?}: {{{}}} is neither {{user}} nor a route parameter", t, name));
        }
        parts.push(rest[..i].to_string());
        parts.push(name.to_string());
        rest = &rest[i + j + 1..];
    }
}

/// A tag's parts (literal, placeholder, literal, ...) as a template: a
/// placeholder names the user or the first route segment of that name.
fn compile_tag(parts: &[String], route: &str, params: &[String]) -> Vec<Part> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            if !part.is_empty() {
                out.push(Part::Lit(part.as_bytes().to_vec()));
            }
            continue;
        }
        if part == "user" {
            out.push(Part::User);
            continue;
        }
        // parse_tag checked that the name is a parameter.
        let index = params.iter().position(|p| p == part).unwrap_or(usize::MAX);
        let before: Vec<&str> = route.split('/').take(index).collect();
        let prefix = if before.iter().any(|s| s.starts_with(':')) {
            None
        } else {
            let mut b = before.join("/").into_bytes();
            b.push(b'/');
            Some(b)
        };
        out.push(Part::Seg { index, prefix });
    }
    out
}

/// The straight-line form of a tag with one placeholder, a path segment
/// after constant segments.
fn simple_tag(parts: &[Part]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let lit = |p: Option<&Part>| match p {
        Some(Part::Lit(b)) => Some(b.clone()),
        None => Some(Vec::new()),
        _ => None,
    };
    let seg = parts.iter().position(|p| matches!(p, Part::Seg { .. }))?;
    if parts.len() > 3 || seg > 1 || parts.iter().filter(|p| !matches!(p, Part::Lit(_))).count() != 1 {
        return None;
    }
    let prefix = match &parts[seg] {
        Part::Seg { prefix: Some(p), .. } => p.clone(),
        _ => return None,
    };
    let before = if seg == 1 { lit(parts.first())? } else { Vec::new() };
    let after = lit(parts.get(seg + 1))?;
    Some((before, prefix, after))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bytes of x equal to c flagged (high bit); the lowest flag is exact.
#[inline(always)]
fn eq_mask(x: u64, c: u8) -> u64 {
    let y = x ^ (ONES * c as u64);
    y.wrapping_sub(ONES) & !y & HIGHS
}

/// The segment of path starting at start (up to the next '/' or the end)
/// when it is found and checked within one 8-byte word: Some(Some(seg))
/// for a usable one, Some(None) for one that cannot go into a tag, None
/// to take the byte loop.
#[inline(always)]
fn segment_word(path: &[u8], start: usize) -> Option<Option<&[u8]>> {
    let n = path.len();
    if n < 8 || start >= n {
        return None;
    }
    let word = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&path[i..i + 8]);
        u64::from_le_bytes(a)
    };
    // The 8 bytes from start; past the end, zero bytes (which are never
    // a '/', and are ignored below as they lie after the segment's end).
    let (x, rest) = if n - start >= 8 { (word(start), n - start) } else { (word(n - 8) >> (8 * (start - (n - 8))), n - start) };
    let slash = eq_mask(x, b'/');
    let len = if slash != 0 {
        (slash.trailing_zeros() / 8) as usize
    } else if rest <= 8 {
        rest
    } else {
        return None;
    };
    // Control characters (below 0x20), DEL and braces: unsafe.
    let bad = (x.wrapping_sub(ONES * 0x20) & !x & HIGHS) | eq_mask(x, 0x7f) | eq_mask(x, b'{') | eq_mask(x, b'}');
    if len == 0 || (bad != 0 && ((bad.trailing_zeros() / 8) as usize) < len) {
        return Some(None);
    }
    Some(Some(&path[start..start + len]))
}

/// A user id or path segment usable in a tag: not empty, at most 128
/// bytes, no braces, no control characters.
#[inline]
fn safe_value(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let mut bad = false;
    for &c in v {
        bad |= c < 0x20 || c == 0x7f || c == b'{' || c == b'}';
    }
    !bad
}

/// The end of the segment starting at start: the next '/' or the end.
#[inline]
fn segment_end(path: &[u8], start: usize) -> usize {
    let mut j = start;
    while j < path.len() && path[j] != b'/' {
        j += 1;
    }
    j
}

/// The path's segment number i (split on '/'), as Go's rules find it.
#[cold]
fn segment_slow(path: &[u8], i: usize) -> &[u8] {
    path.split(|&c| c == b'/').nth(i).unwrap_or(b"")
}

/// The path segment a Seg part names.
#[inline(always)]
fn segment<'a>(path: &'a [u8], index: usize, prefix: &Option<Vec<u8>>) -> &'a [u8] {
    if let Some(p) = prefix {
        if path.len() >= p.len() && fast::eq(&path[..p.len()], p) {
            return &path[p.len()..segment_end(path, p.len())];
        }
    }
    segment_slow(path, index)
}

/// The rule for method and route: rules of the route's length, compared
/// a word at a time.
#[inline(always)]
fn find<'a>(by_len: &'a [Vec<Rule>], method: &[u8], route: &[u8]) -> Option<&'a Rule> {
    let rules = by_len.get(route.len())?;
    rules.iter().find(|r| fast::eq(&r.route, route) && fast::eq(&r.method, method))
}

impl Rules {
    fn find(&self, method: &[u8], route: &[u8]) -> Option<&Rule> {
        find(&self.by_len, method, route)
    }

    /// Writes the tag with its placeholders filled, or returns false (and
    /// writes nothing) when a placeholder has no usable value.
    #[inline(always)]
    fn tag(w: &mut CacheWriter, tag: &Tag, req: &CacheRequestBytes) -> bool {
        if let Some((before, prefix, after)) = &tag.simple {
            if req.path.len() >= prefix.len() && fast::eq(&req.path[..prefix.len()], prefix) {
                if let Some(v) = segment_word(req.path, prefix.len()) {
                    let v = match v {
                        Some(v) => v,
                        None => return false,
                    };
                    let mut t = w.tag_parts();
                    t.push(before);
                    t.push(v);
                    t.push(after);
                    return true;
                }
            }
        }
        Self::tag_parts(w, tag, req)
    }

    /// tag for any template, part by part.
    #[inline(never)]
    fn tag_parts(w: &mut CacheWriter, tag: &Tag, req: &CacheRequestBytes) -> bool {
        let mut t = w.tag_parts();
        for part in &tag.parts {
            let v: &[u8] = match part {
                Part::Lit(b) => {
                    t.push(b);
                    continue;
                }
                Part::User => req.user,
                Part::Seg { index, prefix } => segment(req.path, *index, prefix),
            };
            if !safe_value(v) {
                t.discard();
                return false;
            }
            t.push(v);
        }
        true
    }

    /// Writes the decision for one request. Anything without a rule is
    /// bypassed; a user-scoped rule without a user is bypassed; a
    /// user-scoped key always contains the user.
    #[inline(always)]
    pub fn decide(&mut self, req: &CacheRequestBytes, w: &mut CacheWriter) {
        let Rules { by_len, pairs, .. } = self;
        let r = match find(by_len, req.method, req.route) {
            Some(r) => r,
            None => return,
        };
        if r.purge {
            for t in &r.tags {
                Self::tag(w, t, req);
            }
            return;
        }
        if r.scope == Scope::User && req.user.is_empty() {
            return;
        }
        w.lookup(r.ttl_s, r.scope, r.stale_s);
        let mut k = w.key_parts();
        if r.scope == Scope::User {
            k.push(b"u=");
            k.push(req.user);
            k.push(b"|");
        }
        k.push(req.path);
        if !r.ignore_query && !req.query.is_empty() {
            k.push(b"?");
            k = canonical_query(k, req.query, pairs);
        }
        drop(k);
        for t in &r.tags {
            if !Self::tag(w, t, req) {
                // A tag that cannot be named could never be purged.
                w.bypass();
                return;
            }
        }
    }
}

/// Appends q to the key with its &-separated pairs in byte order (empty
/// pairs dropped), so the same parameters in another order share a key.
/// It takes and gives back the key's Parts by value, so that the caller
/// keeps them in locals.
#[inline(never)]
pub fn canonical_query<'w, 'a>(mut k: Parts<'w, 'a>, q: &[u8], pairs: &mut Vec<(usize, usize)>) -> Parts<'w, 'a> {
    if !q.contains(&b'&') {
        k.push(q);
        return k;
    }
    pairs.clear();
    let mut start = 0;
    for (i, &c) in q.iter().enumerate() {
        if c == b'&' {
            if i > start {
                pairs.push((start, i));
            }
            start = i + 1;
        }
    }
    if q.len() > start {
        pairs.push((start, q.len()));
    }
    pairs.sort_unstable_by(|a, b| q[a.0..a.1].cmp(&q[b.0..b.1]));
    for (n, &(a, b)) in pairs.iter().enumerate() {
        if n > 0 {
            k.push(b"&");
        }
        k.push(&q[a..b]);
    }
    k
}

fn configure(r: &mut Rules, config: &[u8]) -> Result<(), Error> {
    *r = parse(config)?;
    Ok(())
}

fn decide(r: &mut Rules, req: &CacheRequestBytes, w: &mut CacheWriter) -> Result<(), Error> {
    if !r.configured {
        defaults(r)?;
    }
    r.decide(req, w);
    Ok(())
}

/// The built-in rules, for an instance that was never configured.
#[cold]
#[inline(never)]
fn defaults(r: &mut Rules) -> Result<(), Error> {
    *r = parse(b"")?;
    Ok(())
}

/// The policy: configuration, then cache decisions (through the SDK's
/// allocation-free handler: bytes in, the decision written in place).
pub fn policy() -> Policy<Rules> {
    Policy::new(Rules::default()).on_init(configure).cache_bytes(decide)
}

wingate::export!(policy);

#[cfg(test)]
mod tests {
    use super::*;
    use wingate::{Action, CacheDecision, CacheRequest};

    fn req<'a>(method: &'a str, route: &'a str, path: &'a str, query: &'a str, user: &'a str) -> CacheRequest<'a> {
        CacheRequest { method: method.into(), route: route.into(), path: path.into(), query: query.into(), user: user.into() }
    }

    #[test]
    fn defaults_decide_through_the_encoding() {
        let mut p = policy();
        p.call_init(b"").unwrap();
        let d = p.call_cache(&req("GET", "/api/users/:id/reputation", "/api/users/42/reputation", "", "7")).unwrap();
        assert_eq!(d.key, "u=7|/api/users/42/reputation");
        assert_eq!(d.tags, vec!["user:42".to_string()]);
        assert_eq!((d.action, d.scope, d.ttl_s, d.stale_s), (Action::Lookup, Scope::User, 900, 60));
        let d = p.call_cache(&req("GET", "/api/challenges", "/api/challenges", "b=2&&a=1", "")).unwrap();
        assert_eq!(d.key, "/api/challenges?a=1&b=2");
        let d = p.call_cache(&req("POST", "/api/challenges/:id/complete", "/api/challenges/3/complete", "", "42")).unwrap();
        assert_eq!((d.action, d.tags), (Action::Bypass, vec!["user:42".to_string()]));
        // A path segment that cannot be a tag: bypass, never an unpurgeable entry.
        let d = p.call_cache(&req("GET", "/api/challenges/:id", "/api/challenges/{x}", "", "")).unwrap();
        assert_eq!(d, CacheDecision::default());
    }

    /// The one-word segment reader agrees with the byte loop on every
    /// start and every placement of a slash or an unsafe byte.
    #[test]
    fn segment_word_agrees_with_the_loop() {
        let mut paths: Vec<Vec<u8>> = Vec::new();
        for n in 0..20 {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            paths.push(base.clone());
            for i in 0..n {
                for c in [b'/', 0u8, 0x1f, 0x7f, b'{', b'}', 0xc3, 0x20] {
                    let mut p = base.clone();
                    p[i] = c;
                    paths.push(p.clone());
                    if i + 3 < n {
                        p[i + 3] = b'/';
                        paths.push(p);
                    }
                }
            }
        }
        for p in &paths {
            for start in 0..=p.len() {
                let want = {
                    let v = &p[start..segment_end(p, start)];
                    if safe_value(v) { Some(v) } else { None }
                };
                if let Some(got) = segment_word(p, start) {
                    assert_eq!(got, want, "{:?} at {}", p, start);
                }
            }
        }
    }

    #[test]
    fn config_errors_name_the_rule() {
        for (cfg, want) in [
            (r#"{"rules": [{"route": "x", "ttl_s": 1, "scope": "user"}]}"#, "rule 0: route \"x\" must start with /"),
            (r#"{"rules": [{"route": "/a", "scope": "user"}]}"#, "rule 0: ttl_s must be positive"),
            (r#"{"rules": [{"route": "/a", "ttl_s": 1}]}"#, "rule 0: scope must be user or global"),
            (r#"{"rules": [{"route": "/a", "ttl_s": 1, "scope": "user", "tags": ["{nope}"]}]}"#, "is neither {user} nor a route parameter"),
            (r#"{"rules": [], "extra": 1}"#, "unknown field \"extra\""),
            (r#"{"rules": [{"route": "/a", "ttl_s": -1, "scope": "user"}]}"#, "ttl_s must be a whole number"),
            (r#"{"rules": [{"route": "/a", "ttl_s": 1, "scope": "user"}, {"route": "/a", "ttl_s": 2, "scope": "user"}]}"#, "duplicate rule for GET /a"),
        ] {
            let err = parse(cfg.as_bytes()).err().unwrap_or_else(|| panic!("{} accepted", cfg)).to_string();
            assert!(err.contains(want), "{}: {}", cfg, err);
        }
    }
}
