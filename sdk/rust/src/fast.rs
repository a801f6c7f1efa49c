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
#[inline(always)]
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
    // SAFETY: reserve made room for n bytes after len.
    unsafe {
        copy_small(out.as_mut_ptr().add(len), src.as_ptr(), n);
        out.set_len(len + n);
    }
}

/// Writes one cache decision in its encoded form (sdk/ABI.md §6) into the
/// result buffer. A new writer holds a bypass decision with no tags. Call
/// [`lookup`](Self::lookup) first for a lookup, then append to the key,
/// then the tags; or [`bypass`](Self::bypass) to start over as a bypass (a
/// purge is a bypass with tags).
///
/// [`key`](Self::key) appends one part to the key and [`tag`](Self::tag)
/// adds one whole tag; [`begin_tag`](Self::begin_tag), any number of
/// [`tag_part`](Self::tag_part) and [`end_tag`](Self::end_tag) add a tag
/// in parts, and [`drop_tag`](Self::drop_tag) discards an open one. A
/// handler whose decision time matters appends the parts of the key or
/// of a tag through one [`Parts`] ([`key_parts`](Self::key_parts),
/// [`tag_parts`](Self::tag_parts)): the handler gets the writer behind a
/// reference, so each of the writer's methods loads and stores its
/// cursor, and inside a module every load and store is a bounds-checked
/// memory access; a `Parts` holds the cursor in the handler's locals and
/// stores it once, when it is dropped.
///
/// The cursor runs over the buffer's spare capacity: a write checks the
/// room left and stores; only a decision larger than the room reserved
/// before the call grows the buffer.
pub struct CacheWriter<'a> {
    vec: &'a mut Vec<u8>,
    buf: *mut u8,
    /// Bytes written from buf; the decision starts at base.
    pos: usize,
    cap: usize,
    base: usize,
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
    /// A writer appending to vec (after its current contents).
    #[inline(always)]
    pub(crate) fn new(vec: &'a mut Vec<u8>) -> Self {
        let base = vec.len();
        let (buf, cap) = (vec.as_mut_ptr(), vec.capacity());
        let mut w = CacheWriter { vec, buf, pos: base, cap, base, count_at: 0, tag_at: 0, ntags: 0, ttl_s: 0, scope: Scope::Global, stale_s: 0 };
        w.start(Action::Bypass, 0, Scope::Global, 0);
        w
    }

    #[inline(always)]
    fn room(&mut self, n: usize) {
        if n > self.cap - self.pos {
            let (buf, cap) = grow(self.vec, self.pos, n);
            self.buf = buf;
            self.cap = cap;
        }
    }

    #[inline(always)]
    fn put_u32(&mut self, v: u32) {
        self.room(4);
        // SAFETY: room() made 4 bytes after pos writable.
        unsafe { (self.buf.add(self.pos) as *mut u32).write_unaligned(v.to_le()) };
        self.pos += 4;
    }

    #[inline(always)]
    fn set_u32(&mut self, at: usize, v: u32) {
        debug_assert!(at + 4 <= self.pos);
        // SAFETY: at + 4 <= pos: written bytes.
        unsafe { (self.buf.add(at) as *mut u32).write_unaligned(v.to_le()) };
    }

    /// Starts over at base: the action and an empty key.
    #[inline(always)]
    fn start(&mut self, action: Action, ttl_s: u32, scope: Scope, stale_s: u32) {
        self.pos = self.base;
        self.room(5);
        // SAFETY: room(5): the action (1) and the key's length (4).
        unsafe {
            let p = self.buf.add(self.pos);
            *p = action as u8;
            (p.add(1) as *mut u32).write_unaligned(0);
        }
        self.pos += 5;
        self.count_at = 0;
        self.tag_at = 0;
        self.ntags = 0;
        self.ttl_s = ttl_s;
        self.scope = scope;
        self.stale_s = stale_s;
    }

    /// Starts over as a lookup with these fields and an empty key.
    #[inline(always)]
    pub fn lookup(&mut self, ttl_s: u32, scope: Scope, stale_s: u32) {
        self.start(Action::Lookup, ttl_s, scope, stale_s);
    }

    /// Starts over as a bypass (no key, no tags).
    #[inline(always)]
    pub fn bypass(&mut self) {
        self.start(Action::Bypass, 0, Scope::Global, 0);
    }

    /// A Parts appending to the key; its pushes are ignored once a tag
    /// was written.
    #[inline(always)]
    pub fn key_parts(&mut self) -> Parts<'_, 'a> {
        let on = self.count_at == 0;
        Parts::new(self, on, Close::Key)
    }

    /// Appends b to the key. Ignored once a tag was written.
    #[inline(always)]
    pub fn key(&mut self, b: &[u8]) {
        self.key_parts().push(b);
    }

    /// Closes the key: its length, then the fixed fields and the count.
    #[inline(always)]
    fn close_key(&mut self) {
        if self.count_at != 0 {
            return;
        }
        // The key's length is at base + 1, after the action.
        let n = (self.pos - self.base - 5) as u32;
        self.set_u32(self.base + 1, n);
        self.room(13);
        // SAFETY: room(13): ttl (4), scope (1), stale (4), count (4).
        unsafe {
            let p = self.buf.add(self.pos);
            (p as *mut u32).write_unaligned(self.ttl_s.to_le());
            *p.add(4) = self.scope as u8;
            (p.add(5) as *mut u32).write_unaligned(self.stale_s.to_le());
            (p.add(9) as *mut u32).write_unaligned(0);
        }
        self.count_at = self.pos + 9;
        self.pos += 13;
    }

    /// Opens a tag (closing one left open) and returns a Parts appending
    /// to it, which closes it when dropped.
    #[inline(always)]
    pub fn tag_parts(&mut self) -> Parts<'_, 'a> {
        self.begin_tag();
        Parts::new(self, true, Close::Tag)
    }

    /// Opens a tag (closing one left open).
    #[inline(always)]
    pub fn begin_tag(&mut self) {
        self.close_key();
        self.end_tag();
        self.tag_at = self.pos;
        self.put_u32(0);
    }

    /// Appends b to the open tag.
    #[inline(always)]
    pub fn tag_part(&mut self, b: &[u8]) {
        let on = self.tag_at != 0;
        Parts::new(self, on, Close::None).push(b);
    }

    /// Closes the open tag, if any.
    #[inline(always)]
    pub fn end_tag(&mut self) {
        if self.tag_at == 0 {
            return;
        }
        let n = (self.pos - self.tag_at - 4) as u32;
        self.set_u32(self.tag_at, n);
        self.tag_at = 0;
        self.ntags += 1;
        self.set_u32(self.count_at, self.ntags);
    }

    /// Discards the open tag, if any.
    #[inline(always)]
    pub fn drop_tag(&mut self) {
        if self.tag_at != 0 {
            self.pos = self.tag_at;
            self.tag_at = 0;
        }
    }

    /// Appends one whole tag.
    #[inline(always)]
    pub fn tag(&mut self, b: &[u8]) {
        self.tag_parts().push(b);
    }

    /// Completes the encoding.
    #[inline(always)]
    pub(crate) fn finish(mut self) {
        self.end_tag();
        self.close_key();
        // SAFETY: bytes [0, pos) are written and within capacity.
        unsafe { self.vec.set_len(self.pos) };
    }
}

/// What dropping a Parts closes.
#[derive(Clone, Copy, PartialEq)]
enum Close {
    None,
    Key,
    Tag,
    /// The tag, discarded.
    Discard,
}

/// Appends the parts of a key or a tag (see [`CacheWriter`]), holding the
/// writer's cursor in locals until it is dropped, which stores the cursor
/// and closes the tag.
pub struct Parts<'w, 'a> {
    w: &'w mut CacheWriter<'a>,
    buf: *mut u8,
    pos: usize,
    cap: usize,
    /// Whether pushes append (a key's parts after a tag do not).
    on: bool,
    close: Close,
}

impl<'w, 'a> Parts<'w, 'a> {
    #[inline(always)]
    fn new(w: &'w mut CacheWriter<'a>, on: bool, close: Close) -> Self {
        let (buf, pos, cap) = (w.buf, w.pos, w.cap);
        Parts { w, buf, pos, cap, on, close }
    }

    /// Appends b.
    #[inline(always)]
    pub fn push(&mut self, b: &[u8]) {
        if !self.on {
            return;
        }
        let n = b.len();
        if n > self.cap - self.pos {
            let (buf, cap) = grow(self.w.vec, self.pos, n);
            self.buf = buf;
            self.cap = cap;
            self.w.buf = buf;
            self.w.cap = cap;
        }
        // SAFETY: n bytes after pos are within capacity (checked above).
        unsafe { copy_small(self.buf.add(self.pos), b.as_ptr(), n) };
        self.pos += n;
    }

    /// Drops the tag being written instead of closing it (for a key's
    /// Parts, the same as dropping it).
    #[inline(always)]
    pub fn discard(mut self) {
        if self.close == Close::Tag {
            self.close = Close::Discard;
        }
    }
}

impl Drop for Parts<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        // (A grow updated the writer's buffer and capacity already.)
        let w = &mut *self.w;
        w.pos = self.pos;
        match self.close {
            Close::Tag => w.end_tag(),
            Close::Discard => w.drop_tag(),
            Close::None | Close::Key => {}
        }
    }
}

/// Makes room for n more bytes after the pos bytes written (rarely: the
/// caller reserved room); returns the new buffer and capacity.
#[cold]
#[inline(never)]
fn grow(vec: &mut Vec<u8>, pos: usize, n: usize) -> (*mut u8, usize) {
    // SAFETY: bytes [0, pos) were written (by the Vec or by the writer).
    unsafe { vec.set_len(pos) };
    vec.reserve(n);
    (vec.as_mut_ptr(), vec.capacity())
}

/// Copies n bytes; short copies are a few unaligned word moves instead of
/// a call to a byte-copy loop.
///
/// # Safety
/// d must be valid for n byte writes, s for n byte reads, not overlapping.
#[inline(always)]
unsafe fn copy_small(d: *mut u8, s: *const u8, n: usize) {
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

    /// The writer's encoding decodes to the decision it was asked for,
    /// from an empty buffer (every write grows it) and from a roomy one,
    /// with a dropped tag, a restart as bypass and a key past 32 bytes.
    #[test]
    fn writer_encodes_what_the_codec_decodes() {
        use crate::codec::decode_cache_decision;
        use crate::{Action, CacheDecision, Scope};
        let long = vec![b'k'; 300];
        for room in [0usize, 4096] {
            let mut out = Vec::with_capacity(room);
            out.push(9u8);
            let mut w = CacheWriter::new(&mut out);
            w.lookup(60, Scope::User, 5);
            w.key(b"u=7|");
            w.key(&long);
            w.begin_tag();
            w.tag_part(b"user:");
            w.tag_part(b"7");
            w.end_tag();
            w.begin_tag();
            w.tag_part(b"gone");
            w.drop_tag();
            w.tag(b"t2");
            w.finish();
            assert_eq!(out[0], 9);
            let d = decode_cache_decision(&out[1..]).unwrap();
            let key = format!("u=7|{}", String::from_utf8(long.clone()).unwrap());
            assert_eq!(d, CacheDecision { action: Action::Lookup, key, ttl_s: 60, scope: Scope::User, stale_s: 5, tags: vec!["user:7".into(), "t2".into()] });

            let mut out = Vec::with_capacity(room);
            let mut w = CacheWriter::new(&mut out);
            w.lookup(60, Scope::Global, 0);
            w.key(b"/a");
            w.tag(b"x");
            w.bypass();
            w.tag(b"purge:1");
            w.finish();
            let d = decode_cache_decision(&out).unwrap();
            assert_eq!(d, CacheDecision { tags: vec!["purge:1".into()], ..Default::default() });

            let mut out = Vec::with_capacity(room);
            CacheWriter::new(&mut out).finish();
            assert_eq!(decode_cache_decision(&out).unwrap(), CacheDecision::default());
        }
    }

    /// Parts append what the writer's methods append: a key in parts,
    /// tags in parts, a discarded tag, key parts after a tag ignored;
    /// from an empty buffer (every push grows it) and a roomy one.
    #[test]
    fn parts_write_what_the_writer_writes() {
        use crate::codec::decode_cache_decision;
        use crate::{Action, CacheDecision, Scope};
        let long = vec![b'k'; 300];
        for room in [0usize, 4096] {
            let mut out = Vec::with_capacity(room);
            out.push(9u8);
            let mut w = CacheWriter::new(&mut out);
            w.lookup(60, Scope::User, 5);
            {
                let mut k = w.key_parts();
                k.push(b"u=");
                k.push(b"7");
                k.push(b"|");
                k.push(&long);
            }
            {
                let mut t = w.tag_parts();
                t.push(b"user:");
                t.push(b"7");
            }
            {
                let mut t = w.tag_parts();
                t.push(b"gone");
                t.discard();
            }
            w.key_parts().push(b"ignored");
            w.tag(b"t2");
            w.finish();
            assert_eq!(out[0], 9);
            let d = decode_cache_decision(&out[1..]).unwrap();
            let key = format!("u=7|{}", String::from_utf8(long.clone()).unwrap());
            assert_eq!(d, CacheDecision { action: Action::Lookup, key, ttl_s: 60, scope: Scope::User, stale_s: 5, tags: vec!["user:7".into(), "t2".into()] });
        }
    }
}
