//! The allocation-free cache handler: the request's fields as raw bytes
//! and a writer that encodes the decision straight into the result
//! buffer. A decision through [`crate::Policy::cache`] builds Strings and a
//! Vec that are freed after encoding, and checks every string for UTF-8;
//! inside a module (under the host's loop guard, where each loop
//! iteration costs a check) that is most of a decision's time. A handler
//! registered with [`crate::Policy::cache_bytes`] does neither: the
//! request's fields are borrowed as bytes (like Go strings: no UTF-8
//! check) and the decision is written once, in its encoded form.
//!
//! The byte helpers ([`eq`], [`is_ascii`]) work eight bytes at a time
//! with straight-line code for short inputs: inside a module a byte loop
//! costs a guard check per byte.

use crate::{Action, Scope};

/// One cache request's fields as bytes (the same fields as
/// [`crate::CacheRequest`]), borrowed from the input buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheRequestBytes<'a> {
    pub method: &'a [u8],
    pub route: &'a [u8],
    pub path: &'a [u8],
    pub query: &'a [u8],
    pub user: &'a [u8],
}

#[inline(always)]
fn ld8(p: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&p[i..i + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn ld4(p: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&p[i..i + 4]);
    u32::from_le_bytes(a)
}

/// a == b, comparing eight bytes at a time; up to 32 bytes without a loop.
#[inline]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        if n <= 16 {
            return (ld8(a, 0) ^ ld8(b, 0)) | (ld8(a, n - 8) ^ ld8(b, n - 8)) == 0;
        }
        if n <= 32 {
            let m = n - 16;
            return (ld8(a, 0) ^ ld8(b, 0)) | (ld8(a, 8) ^ ld8(b, 8)) | (ld8(a, m) ^ ld8(b, m)) | (ld8(a, n - 8) ^ ld8(b, n - 8)) == 0;
        }
        return eq_long(a, b);
    }
    if n >= 4 {
        return (ld4(a, 0) ^ ld4(b, 0)) | (ld4(a, n - 4) ^ ld4(b, n - 4)) == 0;
    }
    if n == 0 {
        return true;
    }
    // 1 to 3 bytes: first, middle and last cover them all.
    a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]
}

#[inline(never)]
fn eq_long(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    let mut i = 0;
    while i + 8 <= n {
        if ld8(a, i) != ld8(b, i) {
            return false;
        }
        i += 8;
    }
    ld8(a, n - 8) == ld8(b, n - 8)
}

/// Whether every byte is below 0x80, eight bytes at a time.
#[inline]
pub fn is_ascii(b: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    if n >= 8 {
        let mut acc = ld8(b, n - 8);
        let mut i = 0;
        while i + 8 <= n {
            acc |= ld8(b, i);
            i += 8;
        }
        return acc & HI == 0;
    }
    if n >= 4 {
        return (ld4(b, 0) | ld4(b, n - 4)) & 0x8080_8080 == 0;
    }
    if n == 0 {
        return true;
    }
    (b[0] | b[n / 2] | b[n - 1]) < 0x80
}

/// Appends src to out; short copies are a few unaligned word moves
/// instead of a call to a byte-copy loop.
#[inline(always)]
pub fn put(out: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    out.reserve(n);
    let len = out.len();
    // SAFETY: reserve made room for n bytes after len; every store below
    // is inside [len, len+n) and every load inside src.
    unsafe {
        let d = out.as_mut_ptr().add(len);
        let s = src.as_ptr();
        if n >= 8 {
            if n <= 16 {
                let a = (s as *const u64).read_unaligned();
                let b = (s.add(n - 8) as *const u64).read_unaligned();
                (d as *mut u64).write_unaligned(a);
                (d.add(n - 8) as *mut u64).write_unaligned(b);
            } else if n <= 32 {
                let a = (s as *const u64).read_unaligned();
                let b = (s.add(8) as *const u64).read_unaligned();
                let c = (s.add(n - 16) as *const u64).read_unaligned();
                let e = (s.add(n - 8) as *const u64).read_unaligned();
                (d as *mut u64).write_unaligned(a);
                (d.add(8) as *mut u64).write_unaligned(b);
                (d.add(n - 16) as *mut u64).write_unaligned(c);
                (d.add(n - 8) as *mut u64).write_unaligned(e);
            } else {
                std::ptr::copy_nonoverlapping(s, d, n);
            }
        } else if n >= 4 {
            let a = (s as *const u32).read_unaligned();
            let b = (s.add(n - 4) as *const u32).read_unaligned();
            (d as *mut u32).write_unaligned(a);
            (d.add(n - 4) as *mut u32).write_unaligned(b);
        } else if n > 0 {
            *d = *s;
            *d.add(n / 2) = *s.add(n / 2);
            *d.add(n - 1) = *s.add(n - 1);
        }
        out.set_len(len + n);
    }
}

#[inline(always)]
fn put_u32(out: &mut Vec<u8>, v: u32) {
    put(out, &v.to_le_bytes());
}

#[inline(always)]
fn set_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes one cache decision in its encoded form (sdk/ABI.md §6) into the
/// result buffer. A new writer holds a bypass decision with no tags. Call
/// [`lookup`](Self::lookup) first for a lookup, then [`key`](Self::key)
/// any number of times to append to the key, then the tags; or
/// [`bypass`](Self::bypass) to start over as a bypass (a purge is a
/// bypass with tags). A tag is [`begin_tag`](Self::begin_tag), any number
/// of [`tag_part`](Self::tag_part), [`end_tag`](Self::end_tag), or
/// [`tag`](Self::tag) for a whole one; [`drop_tag`](Self::drop_tag)
/// discards an open tag.
pub struct CacheWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the decision starts (after the status byte).
    base: usize,
    /// Where the key's length goes; the key follows it.
    key_at: usize,
    /// Where the tag count goes, once the key is closed (0 before).
    count_at: usize,
    /// Where the open tag's length goes (0 when none is open).
    tag_at: usize,
    ntags: u32,
    ttl_s: u32,
    scope: Scope,
    stale_s: u32,
}

impl<'a> CacheWriter<'a> {
    #[inline(always)]
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        let base = out.len();
        let mut w = CacheWriter { out, base, key_at: 0, count_at: 0, tag_at: 0, ntags: 0, ttl_s: 0, scope: Scope::Global, stale_s: 0 };
        w.start(Action::Bypass, 0, Scope::Global, 0);
        w
    }

    #[inline(always)]
    fn start(&mut self, action: Action, ttl_s: u32, scope: Scope, stale_s: u32) {
        self.out.truncate(self.base);
        self.out.push(action as u8);
        self.key_at = self.out.len();
        put_u32(self.out, 0);
        self.count_at = 0;
        self.tag_at = 0;
        self.ntags = 0;
        self.ttl_s = ttl_s;
        self.scope = scope;
        self.stale_s = stale_s;
    }

    /// Starts over as a lookup with these fields and an empty key.
    #[inline]
    pub fn lookup(&mut self, ttl_s: u32, scope: Scope, stale_s: u32) {
        self.start(Action::Lookup, ttl_s, scope, stale_s);
    }

    /// Starts over as a bypass (no key, no tags).
    #[inline]
    pub fn bypass(&mut self) {
        self.start(Action::Bypass, 0, Scope::Global, 0);
    }

    /// Appends b to the key. Ignored once a tag was written.
    #[inline]
    pub fn key(&mut self, b: &[u8]) {
        if self.count_at == 0 {
            put(self.out, b);
        }
    }

    /// Closes the key: its length, then the fixed fields and the count.
    #[inline(always)]
    fn close_key(&mut self) {
        if self.count_at != 0 {
            return;
        }
        let n = (self.out.len() - self.key_at - 4) as u32;
        set_u32(self.out, self.key_at, n);
        put_u32(self.out, self.ttl_s);
        self.out.push(self.scope as u8);
        put_u32(self.out, self.stale_s);
        self.count_at = self.out.len();
        put_u32(self.out, 0);
    }

    /// Opens a tag (closing one left open).
    #[inline]
    pub fn begin_tag(&mut self) {
        self.close_key();
        self.end_tag();
        self.tag_at = self.out.len();
        put_u32(self.out, 0);
    }

    /// Appends b to the open tag.
    #[inline]
    pub fn tag_part(&mut self, b: &[u8]) {
        if self.tag_at != 0 {
            put(self.out, b);
        }
    }

    /// Closes the open tag, if any.
    #[inline]
    pub fn end_tag(&mut self) {
        if self.tag_at == 0 {
            return;
        }
        let n = (self.out.len() - self.tag_at - 4) as u32;
        set_u32(self.out, self.tag_at, n);
        self.tag_at = 0;
        self.ntags += 1;
        set_u32(self.out, self.count_at, self.ntags);
    }

    /// Discards the open tag, if any.
    #[inline]
    pub fn drop_tag(&mut self) {
        if self.tag_at != 0 {
            self.out.truncate(self.tag_at);
            self.tag_at = 0;
        }
    }

    /// Appends one whole tag.
    #[inline]
    pub fn tag(&mut self, b: &[u8]) {
        self.begin_tag();
        self.tag_part(b);
        self.end_tag();
    }

    /// Completes the encoding.
    #[inline(always)]
    pub(crate) fn finish(mut self) {
        self.end_tag();
        self.close_key();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_ascii_put_at_every_length() {
        let src: Vec<u8> = (0..80u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=80 {
            let a = &src[..n];
            let b = a.to_vec();
            assert!(eq(a, &b), "{}", n);
            assert!(is_ascii(a), "{}", n);
            for i in 0..n {
                let mut c = b.clone();
                c[i] ^= 1;
                assert!(!eq(a, &c), "{} {}", n, i);
                c[i] = 0x80;
                assert!(!is_ascii(&c), "{} {}", n, i);
            }
            let mut out = vec![7u8];
            put(&mut out, a);
            assert_eq!(&out[1..], a);
            assert_eq!(out[0], 7);
        }
        assert!(!eq(b"ab", b"abc"));
    }
}
