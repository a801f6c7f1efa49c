//! The ABI v1 binary encoding (sdk/ABI.md §6): flat, little-endian, no
//! padding. Decoders borrow strings from the input and reject exactly what
//! the Go codec (package sdk/abi) rejects; encoders append to a Vec.

use std::borrow::Cow;
use std::fmt;

use crate::*;

/// Largest list the decoders accept (`abi.MaxListLen`).
pub const MAX_LIST_LEN: u32 = 65_536;
/// Largest request or result payload (`abi.MaxPayload`, 16 MiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Why bytes did not decode; the messages match package abi's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a field (`abi.ErrShort`).
    Short,
    /// Bytes are left after the last field (`abi.ErrTrailing`).
    Trailing,
    /// An enum byte is out of its range (`abi.ErrEnum`).
    Enum,
    /// A list count is over MAX_LIST_LEN (`abi.ErrTooLong`).
    TooLong,
    /// A route score is NaN or outside [0, 1] (`abi.ErrScore`).
    Score,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Short => "abi: input too short",
            DecodeError::Trailing => "abi: trailing bytes after the last field",
            DecodeError::Enum => "abi: enum value out of range",
            DecodeError::TooLong => "abi: length or count over the limit",
            DecodeError::Score => "abi: score outside [0, 1]",
        })
    }
}

impl std::error::Error for DecodeError {}

/// A reader over the input; every method fails with Short at the end.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.b.len() {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A string field. Valid UTF-8 is borrowed; other bytes (the ABI does
    /// not check UTF-8) are replaced with U+FFFD in a copy.
    fn str(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        let b = self.bytes()?;
        if crate::fast::is_ascii(b) {
            // SAFETY: ASCII is UTF-8. (core's from_utf8 costs about
            // 0.2 µs per string inside a module; a byte loop about 15 ns
            // per byte under the host's loop guard; this check a word at
            // a time a few ns per 8 bytes.)
            return Ok(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) }));
        }
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) => Ok(Cow::Owned(lossy(b))),
        }
    }
    fn enum_u8(&mut self, max: u8) -> Result<u8, DecodeError> {
        let v = self.u8()?;
        if v > max {
            return Err(DecodeError::Enum);
        }
        Ok(v)
    }
    /// A list count, checked against the limit and the bytes left at the
    /// item's minimum size.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()?;
        if n > MAX_LIST_LEN {
            return Err(DecodeError::TooLong);
        }
        if (n as usize).saturating_mul(min_item) > self.b.len() {
            return Err(DecodeError::Short);
        }
        Ok(n as usize)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

#[cold]
#[inline(never)]
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

// ---- requests: decode (guest side) and encode (tests, host side) ----

/// Decodes a CacheRequest; its strings borrow from b.
pub fn decode_cache_request(b: &[u8]) -> Result<CacheRequest<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let req = CacheRequest {
        method: r.str()?,
        route: r.str()?,
        path: r.str()?,
        query: r.str()?,
        user: r.str()?,
    };
    r.end()?;
    Ok(req)
}

/// Decodes a CacheRequest's fields as bytes (no UTF-8 check), borrowed
/// from b.
#[inline]
pub fn decode_cache_request_bytes(b: &[u8]) -> Result<crate::fast::CacheRequestBytes<'_>, DecodeError> {
    // Straight-line, one check per length and per field, a length read as
    // one word: inside a module every call, every bounds check and every
    // byte load costs.
    let mut rest = b;
    let method = field(&mut rest).ok_or(DecodeError::Short)?;
    let route = field(&mut rest).ok_or(DecodeError::Short)?;
    let path = field(&mut rest).ok_or(DecodeError::Short)?;
    let query = field(&mut rest).ok_or(DecodeError::Short)?;
    let user = field(&mut rest).ok_or(DecodeError::Short)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(crate::fast::CacheRequestBytes { method, route, path, query, user })
}

/// The length-prefixed field at the start of rest, moving rest past it;
/// None when rest ends inside it.
#[inline(always)]
fn field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let r = *rest;
    if r.len() < 4 {
        return None;
    }
    // SAFETY: r holds at least 4 bytes.
    let n = u32::from_le(unsafe { (r.as_ptr() as *const u32).read_unaligned() }) as usize;
    if r.len() - 4 < n {
        return None;
    }
    // SAFETY: 4 + n <= r.len(), checked above.
    unsafe {
        *rest = r.get_unchecked(4 + n..);
        Some(r.get_unchecked(4..4 + n))
    }
}

/// Appends the encoding of req to out.
pub fn encode_cache_request(out: &mut Vec<u8>, req: &CacheRequest<'_>) {
    put_str(out, &req.method);
    put_str(out, &req.route);
    put_str(out, &req.path);
    put_str(out, &req.query);
    put_str(out, &req.user);
}

/// Decodes a RouteRequest; its message borrows from b.
pub fn decode_route_request(b: &[u8]) -> Result<RouteRequest<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let message = r.str()?;
    let purpose = if r.enum_u8(1)? == 0 { Purpose::Chat } else { Purpose::Assessment };
    let req = RouteRequest { message, purpose, history_turns: r.u32()?, history_tokens: r.u32()? };
    r.end()?;
    Ok(req)
}

/// Appends the encoding of req to out.
pub fn encode_route_request(out: &mut Vec<u8>, req: &RouteRequest<'_>) {
    put_str(out, &req.message);
    out.push(req.purpose as u8);
    put_u32(out, req.history_turns);
    put_u32(out, req.history_tokens);
}

/// Decodes a CompressRequest; its strings borrow from b.
pub fn decode_compress_request(b: &[u8]) -> Result<CompressRequest<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let budget_tokens = r.u32()?;
    let query = r.str()?;
    let n = r.count(13)?;
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.str()?;
        let role = match r.enum_u8(2)? {
            0 => Role::User,
            1 => Role::Assistant,
            _ => Role::System,
        };
        let tokens = r.u32()?;
        let text = r.str()?;
        messages.push(Message { id, role, tokens, text });
    }
    r.end()?;
    Ok(CompressRequest { budget_tokens, query, messages })
}

/// Appends the encoding of req to out.
pub fn encode_compress_request(out: &mut Vec<u8>, req: &CompressRequest<'_>) {
    put_u32(out, req.budget_tokens);
    put_str(out, &req.query);
    put_u32(out, req.messages.len() as u32);
    for m in &req.messages {
        put_str(out, &m.id);
        out.push(m.role as u8);
        put_u32(out, m.tokens);
        put_str(out, &m.text);
    }
}

// ---- decisions: encode (guest side) and decode (tests, host side) ----

/// Appends the encoding of d to out.
pub fn encode_cache_decision(out: &mut Vec<u8>, d: &CacheDecision) {
    out.push(d.action as u8);
    put_str(out, &d.key);
    put_u32(out, d.ttl_s);
    out.push(d.scope as u8);
    put_u32(out, d.stale_s);
    put_u32(out, d.tags.len() as u32);
    for t in &d.tags {
        put_str(out, t);
    }
}

/// Decodes a CacheDecision.
pub fn decode_cache_decision(b: &[u8]) -> Result<CacheDecision, DecodeError> {
    let mut r = Reader::new(b);
    let action = if r.enum_u8(1)? == 0 { Action::Bypass } else { Action::Lookup };
    let key = r.str()?.into_owned();
    let ttl_s = r.u32()?;
    let scope = if r.enum_u8(1)? == 0 { Scope::Global } else { Scope::User };
    let stale_s = r.u32()?;
    let n = r.count(4)?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(r.str()?.into_owned());
    }
    r.end()?;
    Ok(CacheDecision { action, key, ttl_s, scope, stale_s, tags })
}

/// Appends the encoding of d to out.
pub fn encode_route_decision(out: &mut Vec<u8>, d: &RouteDecision) {
    out.push(d.tier as u8);
    out.extend_from_slice(&d.score.to_le_bytes());
    put_str(out, &d.reason);
}

/// Decodes a RouteDecision, rejecting a NaN or out-of-range score.
pub fn decode_route_decision(b: &[u8]) -> Result<RouteDecision, DecodeError> {
    let mut r = Reader::new(b);
    let tier = match r.enum_u8(2)? {
        0 => Tier::Economy,
        1 => Tier::Standard,
        _ => Tier::Premium,
    };
    let score = r.f64()?;
    let reason = r.str()?.into_owned();
    if !(0.0..=1.0).contains(&score) {
        return Err(DecodeError::Score);
    }
    r.end()?;
    Ok(RouteDecision { tier, score, reason })
}

/// Appends the encoding of d to out.
pub fn encode_compress_decision(out: &mut Vec<u8>, d: &CompressDecision) {
    put_u32(out, d.keep.len() as u32);
    for &k in &d.keep {
        put_u32(out, k);
    }
    put_str(out, &d.summary);
    put_u32(out, d.tokens);
}

/// Decodes a CompressDecision (the encoding only; the host also checks
/// it against its request).
pub fn decode_compress_decision(b: &[u8]) -> Result<CompressDecision, DecodeError> {
    let mut r = Reader::new(b);
    let n = r.count(4)?;
    let mut keep = Vec::with_capacity(n);
    for _ in 0..n {
        keep.push(r.u32()?);
    }
    let summary = r.str()?.into_owned();
    let tokens = r.u32()?;
    r.end()?;
    Ok(CompressDecision { keep, summary, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes decoder accepts and rejects exactly what the string
    /// decoder does, with the same fields (as bytes), on every truncation and every
    /// one-byte change of encoded requests (lengths that overrun the
    /// input, lengths near u32::MAX, trailing bytes).
    #[test]
    fn bytes_decoder_agrees_with_the_string_decoder() {
        let reqs = [
            CacheRequest::default(),
            CacheRequest { method: "GET".into(), route: "/api/users/:id/reputation".into(), path: "/api/users/42/reputation".into(), query: "a=1&b=2".into(), user: "42".into() },
            CacheRequest { method: "POST".into(), route: "/".into(), path: "/".into(), query: "".into(), user: "".into() },
        ];
        let check = |b: &[u8]| {
            let want = decode_cache_request(b);
            let got = decode_cache_request_bytes(b);
            match (&want, &got) {
                (Ok(w), Ok(g)) => {
                    // The string decoder replaces bytes that are not UTF-8.
                    let l = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    assert_eq!(
                        [&w.method, &w.route, &w.path, &w.query, &w.user].map(|s| s.to_string()),
                        [l(g.method), l(g.route), l(g.path), l(g.query), l(g.user)],
                        "{:?}",
                        b
                    );
                }
                (Err(w), Err(g)) => assert_eq!(w, g, "{:?}", b),
                _ => panic!("{:?}: string decoder {:?}, bytes decoder {:?}", b, want.map(|_| ()), got.map(|_| ())),
            }
        };
        for req in &reqs {
            let mut b = Vec::new();
            encode_cache_request(&mut b, req);
            for n in 0..=b.len() {
                check(&b[..n]);
            }
            let mut t = b.clone();
            t.push(0);
            check(&t);
            for i in 0..b.len() {
                for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xfe, 0xff] {
                    let mut m = b.clone();
                    m[i] = v;
                    check(&m);
                }
            }
        }
    }
}
