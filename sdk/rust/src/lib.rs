//! Write Wingate policies in Rust.
//!
//! A policy is a `cdylib` crate built for `wasm32-unknown-unknown` (or
//! `wasm32-wasi`). The author writes one typed function per kind of
//! decision, registers them on a [`Policy`] together with the policy's
//! state, and exports it with [`export!`]:
//!
//! ```
//! use wingate::{Policy, RouteDecision, RouteRequest, Tier, Error};
//!
//! #[derive(Default)]
//! struct Router { premium_at: usize }
//!
//! fn configure(r: &mut Router, config: &[u8]) -> Result<(), Error> {
//!     let v = wingate::json::parse(config)?;
//!     r.premium_at = v.get("premium_at").and_then(|v| v.as_f64()).unwrap_or(200.0) as usize;
//!     Ok(())
//! }
//!
//! fn route(r: &mut Router, req: &RouteRequest) -> Result<RouteDecision, Error> {
//!     let tier = if req.message.len() >= r.premium_at { Tier::Premium } else { Tier::Economy };
//!     Ok(RouteDecision { tier, score: 0.5, reason: "length".into() })
//! }
//!
//! fn policy() -> Policy<Router> {
//!     Policy::new(Router::default()).on_init(configure).route(route)
//! }
//!
//! wingate::export!(policy);
//!
//! // In a unit test, natively, through the same encoding the host uses:
//! let mut p = policy();
//! p.call_init(br#"{"premium_at": 5}"#).unwrap();
//! let d = p.call_route(&RouteRequest { message: "hello!".into(), ..Default::default() }).unwrap();
//! assert_eq!(d.tier, Tier::Premium);
//! ```
//!
//! The crate implements ABI v1 (sdk/ABI.md): the exports, the input and
//! output buffers, the binary codec (checked against the golden vectors of
//! sdk/abi/testdata) and the packed result. Author code never sees a
//! pointer, a length or a status byte. A handler that returns an error
//! makes the host serve the kind's fail-open decision for that call; a
//! panic traps the instance (logged first), which the host also answers
//! with the fail-open decision and a fresh instance.
//!
//! Request strings borrow the host's input buffer: they are valid while
//! the handler runs (the borrow checker enforces it). Decisions own their
//! strings. Policies get no file system, network, environment or clock;
//! they log with [`log_debug`], [`log_info`], [`log_warn`] and
//! [`log_error`], which the host forwards to its structured log.
//!
//! A cache policy whose decision time matters can register
//! [`Policy::cache_bytes`] instead of [`Policy::cache`]: the request's
//! fields as bytes and a [`CacheWriter`] that encodes the decision straight
//! into the result buffer, with no allocation per call (the default cache
//! policy in plugins/cache-rs does; see the [`fast`] module).
//!
//! The crate depends on nothing but the standard library.

use std::borrow::Cow;
use std::fmt;

pub mod codec;
pub mod fast;
pub mod json;
#[doc(hidden)]
pub mod rt;

pub use codec::DecodeError;
pub use fast::{CacheRequestBytes, CacheWriter};

/// The ABI major version, carried in the marker export's name.
pub const ABI_MAJOR: u32 = 1;
/// The ABI minor version this crate implements (the marker's result).
pub const ABI_MINOR: i32 = 0;

/// The error a handler returns: any error, or a message
/// (`Err("no config".into())`).
pub type Error = Box<dyn std::error::Error>;

/// The kinds of decision (sdk/ABI.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cache = 1,
    Route = 2,
    Compress = 3,
}

impl Kind {
    /// The kind's bit in `wingate_kinds`.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
    /// The kind of an ABI number.
    #[inline]
    pub fn from_i32(k: i32) -> Option<Kind> {
        match k {
            1 => Some(Kind::Cache),
            2 => Some(Kind::Route),
            3 => Some(Kind::Compress),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Cache => "cache",
            Kind::Route => "route",
            Kind::Compress => "compress",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a cache decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Bypass = 0,
    Lookup = 1,
}

/// Who shares a cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global = 0,
    User = 1,
}

/// Why a chat message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Chat = 0,
    Assessment = 1,
}

/// A model tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Economy = 0,
    Standard = 1,
    Premium = 2,
}

/// Who wrote a history message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User = 0,
    Assistant = 1,
    System = 2,
}

impl Default for Action {
    fn default() -> Self {
        Action::Bypass
    }
}
impl Default for Scope {
    fn default() -> Self {
        Scope::Global
    }
}
impl Default for Purpose {
    fn default() -> Self {
        Purpose::Chat
    }
}
impl Default for Tier {
    fn default() -> Self {
        Tier::Economy
    }
}
impl Default for Role {
    fn default() -> Self {
        Role::User
    }
}

/// One API request to decide caching for (kind 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheRequest<'a> {
    /// Upper case, e.g. `GET`.
    pub method: Cow<'a, str>,
    /// The route template, e.g. `/api/users/:id/reputation`.
    pub route: Cow<'a, str>,
    /// The request path, e.g. `/api/users/42/reputation`.
    pub path: Cow<'a, str>,
    /// The raw query string without `?`.
    pub query: Cow<'a, str>,
    /// The authenticated user id as decimal, empty when anonymous.
    pub user: Cow<'a, str>,
}

/// How to cache one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheDecision {
    pub action: Action,
    /// The cache key; required (non-empty) for a lookup.
    pub key: String,
    /// Seconds an entry is fresh.
    pub ttl_s: u32,
    pub scope: Scope,
    /// Seconds past the TTL a stale copy may be served while refreshing.
    pub stale_s: u32,
    /// Purge tags, e.g. `user:42`.
    pub tags: Vec<String>,
}

/// One chat message to choose a model tier for (kind 2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRequest<'a> {
    pub message: Cow<'a, str>,
    pub purpose: Purpose,
    pub history_turns: u32,
    pub history_tokens: u32,
}

/// The chosen tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDecision {
    pub tier: Tier,
    /// Complexity in [0, 1]; anything else is an invalid decision.
    pub score: f64,
    /// Short, for logs and the response's attribution.
    pub reason: String,
}

/// One history message of a compress request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message<'a> {
    pub id: Cow<'a, str>,
    pub role: Role,
    /// The host's token count of text.
    pub tokens: u32,
    pub text: Cow<'a, str>,
}

/// A history to fit into a token budget (kind 3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompressRequest<'a> {
    pub budget_tokens: u32,
    /// The new user message.
    pub query: Cow<'a, str>,
    /// The history, oldest first.
    pub messages: Vec<Message<'a>>,
}

/// Which messages enter the context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompressDecision {
    /// Indexes into the request's messages, strictly ascending.
    pub keep: Vec<u32>,
    /// What stands in for the messages not kept; may be empty.
    pub summary: String,
    /// Tokens of the kept messages plus the summary (at most the budget).
    pub tokens: u32,
}

/// The configuration handler: the policy's configuration bytes (the raw
/// JSON of "config" in the policies file), once per instance.
pub type InitFn<S> = fn(&mut S, &[u8]) -> Result<(), Error>;
/// The cache handler.
pub type CacheFn<S> = fn(&mut S, &CacheRequest<'_>) -> Result<CacheDecision, Error>;
/// The allocation-free cache handler: the request as bytes, the decision
/// written in place (see [`fast`]).
pub type CacheBytesFn<S> = fn(&mut S, &CacheRequestBytes<'_>, &mut CacheWriter<'_>) -> Result<(), Error>;
/// The route handler.
pub type RouteFn<S> = fn(&mut S, &RouteRequest<'_>) -> Result<RouteDecision, Error>;
/// The compress handler.
pub type CompressFn<S> = fn(&mut S, &CompressRequest<'_>) -> Result<CompressDecision, Error>;

/// A policy: its state and one handler per kind it decides.
pub struct Policy<S> {
    state: S,
    init: Option<InitFn<S>>,
    cache: Option<CacheFn<S>>,
    cache_bytes: Option<CacheBytesFn<S>>,
    route: Option<RouteFn<S>>,
    compress: Option<CompressFn<S>>,
    out: Vec<u8>,
}

const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

impl<S> Policy<S> {
    /// A policy with state and no handlers yet.
    pub fn new(state: S) -> Self {
        Policy { state, init: None, cache: None, cache_bytes: None, route: None, compress: None, out: Vec::new() }
    }
    /// Registers the configuration handler. Without one, configuration
    /// bytes are ignored.
    pub fn on_init(mut self, f: InitFn<S>) -> Self {
        self.init = Some(f);
        self
    }
    /// Registers the cache handler (replacing a cache_bytes handler).
    pub fn cache(mut self, f: CacheFn<S>) -> Self {
        self.cache = Some(f);
        self.cache_bytes = None;
        self
    }
    /// Registers the allocation-free cache handler (replacing a cache
    /// handler): the request's fields as bytes, without a UTF-8 check,
    /// and the decision written straight into the result buffer. For a
    /// policy whose decision time matters; see [`fast`].
    pub fn cache_bytes(mut self, f: CacheBytesFn<S>) -> Self {
        self.cache_bytes = Some(f);
        self.cache = None;
        self
    }
    /// Registers the route handler.
    pub fn route(mut self, f: RouteFn<S>) -> Self {
        self.route = Some(f);
        self
    }
    /// Registers the compress handler.
    pub fn compress(mut self, f: CompressFn<S>) -> Self {
        self.compress = Some(f);
        self
    }
    /// The policy's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The bit set of kinds with a handler, as `wingate_kinds` reports it.
    pub fn kinds(&self) -> u32 {
        let mut k = 0;
        if self.cache.is_some() || self.cache_bytes.is_some() {
            k |= Kind::Cache.bit();
        }
        if self.route.is_some() {
            k |= Kind::Route.bit();
        }
        if self.compress.is_some() {
            k |= Kind::Compress.bit();
        }
        k
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, msg: &dyn fmt::Display) -> &[u8] {
        use std::io::Write;
        self.out.clear();
        self.out.push(STATUS_ERROR);
        let _ = write!(self.out, "{}", msg);
        if self.out.len() == 1 {
            self.out.extend_from_slice(b"error");
        }
        &self.out
    }

    /// Runs the init handler on config; returns the result payload.
    #[doc(hidden)]
    pub fn initialize(&mut self, config: &[u8]) -> &[u8] {
        if let Some(f) = self.init {
            if let Err(e) = f(&mut self.state, config) {
                return self.fail(&e);
            }
        }
        self.out.clear();
        self.out.push(STATUS_OK);
        &self.out
    }

    /// Decodes input as a request of kind, runs its handler and returns
    /// the result payload: a status byte and the encoded decision or the
    /// error message.
    #[doc(hidden)]
    #[inline(always)]
    pub fn decide(&mut self, kind: i32, input: &[u8]) -> &[u8] {
        // The allocation-free cache path first and inline: it is the one
        // whose decision time matters; the others go through one call.
        if kind == Kind::Cache as i32 {
            if let Some(f) = self.cache_bytes {
                return self.decide_cache_bytes(f, input);
            }
        }
        self.decide_other(kind, input)
    }

    /// decide for every path but cache_bytes.
    #[inline(never)]
    fn decide_other(&mut self, kind: i32, input: &[u8]) -> &[u8] {
        let kind = match Kind::from_i32(kind) {
            Some(k) => k,
            None => return self.fail_kind(kind),
        };
        match kind {
            Kind::Cache => self.decide_with(self.cache, input, codec::decode_cache_request, codec::encode_cache_decision),
            Kind::Route => self.decide_with(self.route, input, codec::decode_route_request, codec::encode_route_decision),
            Kind::Compress => {
                self.decide_with(self.compress, input, codec::decode_compress_request, codec::encode_compress_decision)
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn fail_kind(&mut self, kind: i32) -> &[u8] {
        self.fail(&format_args!("unknown kind {}", kind))
    }

    /// One kind's path: decode the request, run the kind's handler, encode
    /// its decision after the OK status.
    #[inline(always)]
    fn decide_with<'a, Req, Dec>(
        &mut self,
        f: Option<fn(&mut S, &Req) -> Result<Dec, Error>>,
        input: &'a [u8],
        decode: fn(&'a [u8]) -> Result<Req, DecodeError>,
        encode: fn(&mut Vec<u8>, &Dec),
    ) -> &[u8] {
        let f = match f {
            Some(f) => f,
            None => return self.fail(&"no handler registered for this kind"),
        };
        let req = match decode(input) {
            Ok(r) => r,
            Err(e) => return self.fail(&e),
        };
        match f(&mut self.state, &req) {
            Ok(d) => {
                self.out.clear();
                self.out.push(STATUS_OK);
                encode(&mut self.out, &d);
            }
            Err(e) => return self.fail(&e),
        }
        &self.out
    }

    /// The cache_bytes path: decode, run the handler on a writer over the
    /// result buffer, finish the encoding.
    #[inline(always)]
    fn decide_cache_bytes(&mut self, f: CacheBytesFn<S>, input: &[u8]) -> &[u8] {
        let req = match codec::decode_cache_request_bytes(input) {
            Ok(r) => r,
            Err(e) => return self.fail_decode(e),
        };
        // Room for a decision as long as the request and then some: the
        // writer grows the buffer only past it.
        let room = 4096 + 2 * input.len();
        if self.out.capacity() < room {
            reserve(&mut self.out, room);
        }
        // SAFETY: the capacity is at least room, over 1.
        unsafe {
            *self.out.as_mut_ptr() = STATUS_OK;
            self.out.set_len(1);
        }
        let mut w = CacheWriter::new(&mut self.out);
        match f(&mut self.state, &req, &mut w) {
            Ok(()) => w.finish(),
            Err(e) => return self.fail(&e),
        }
        &self.out
    }

    #[cold]
    #[inline(never)]
    fn fail_decode(&mut self, e: DecodeError) -> &[u8] {
        self.fail(&e)
    }

    // ---- native unit testing: the host's encoding, both ways ----

    /// Runs the init handler with config the way the host does when it
    /// starts an instance. Meant for unit tests.
    pub fn call_init(&mut self, config: &[u8]) -> Result<(), CallError> {
        let out = self.initialize(config).to_vec();
        result(&out).map(|_| ())
    }

    /// Runs the cache handler on req through the binary encoding in both
    /// directions, the way the host calls it. Meant for unit tests.
    pub fn call_cache(&mut self, req: &CacheRequest<'_>) -> Result<CacheDecision, CallError> {
        self.call(Kind::Cache, req, codec::encode_cache_request, codec::decode_cache_decision)
    }

    /// call_cache for the route kind.
    pub fn call_route(&mut self, req: &RouteRequest<'_>) -> Result<RouteDecision, CallError> {
        self.call(Kind::Route, req, codec::encode_route_request, codec::decode_route_decision)
    }

    /// call_cache for the compress kind.
    pub fn call_compress(&mut self, req: &CompressRequest<'_>) -> Result<CompressDecision, CallError> {
        self.call(Kind::Compress, req, codec::encode_compress_request, codec::decode_compress_decision)
    }

    /// Encodes req as the host does, decides it, overwrites the input (as
    /// the host's next request would) and decodes the decision.
    fn call<Req, Dec>(
        &mut self,
        kind: Kind,
        req: &Req,
        encode: fn(&mut Vec<u8>, &Req),
        decode: fn(&[u8]) -> Result<Dec, DecodeError>,
    ) -> Result<Dec, CallError> {
        let mut input = Vec::new();
        encode(&mut input, req);
        let out = self.decide(kind as i32, &input).to_vec();
        poison(&mut input);
        decode(result(&out)?).map_err(CallError::Decode)
    }
}

/// Makes out's capacity at least room (rarely: the buffer is kept between
/// decisions).
#[cold]
#[inline(never)]
fn reserve(out: &mut Vec<u8>, room: usize) {
    out.clear();
    out.reserve(room);
}

/// Overwrites an input buffer after its handler returned, as the host's
/// next request would.
fn poison(b: &mut [u8]) {
    for x in b.iter_mut() {
        *x = 0xa5;
    }
}

/// Why a call_* function failed, as the host would see it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The handler returned this error message (StatusError).
    Policy(String),
    /// The payload was empty or had an unknown status byte.
    Payload(String),
    /// The decision's bytes did not decode.
    Decode(DecodeError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Policy(m) => write!(f, "policy error: {}", m),
            CallError::Payload(m) => write!(f, "invalid result payload: {}", m),
            CallError::Decode(e) => write!(f, "decode decision: {}", e),
        }
    }
}

impl std::error::Error for CallError {}

fn result(out: &[u8]) -> Result<&[u8], CallError> {
    match out.first() {
        None => Err(CallError::Payload("empty".into())),
        Some(&STATUS_OK) => Ok(&out[1..]),
        Some(&STATUS_ERROR) => Err(CallError::Policy(String::from_utf8_lossy(&out[1..]).into_owned())),
        Some(s) => Err(CallError::Payload(format!("status byte {}", s))),
    }
}

// ---- logging ----

const LEVEL_DEBUG: i32 = -4;
const LEVEL_INFO: i32 = 0;
const LEVEL_WARN: i32 = 4;
const LEVEL_ERROR: i32 = 8;

/// Logs msg at debug level in the host's log, tagged with the policy.
pub fn log_debug(msg: &str) {
    rt::log(LEVEL_DEBUG, msg)
}
/// Logs msg at info level.
pub fn log_info(msg: &str) {
    rt::log(LEVEL_INFO, msg)
}
/// Logs msg at warn level.
pub fn log_warn(msg: &str) {
    rt::log(LEVEL_WARN, msg)
}
/// Logs msg at error level.
pub fn log_error(msg: &str) {
    rt::log(LEVEL_ERROR, msg)
}

/// Exports a policy: `wingate::export!(policy)`, where `policy` is a
/// `fn() -> Policy<S>`. It defines the module's ABI v1 exports, which
/// build the policy once per instance (at the first call) and hand every
/// call to it. Use it once, in the crate's root (crate-type `cdylib`).
/// The exports are thin: every pointer and length is handled in the
/// crate's `rt` module.
#[macro_export]
macro_rules! export {
    ($make:path) => {
        const _: () = {
            #[no_mangle]
            pub extern "C" fn wingate_abi_v1() -> i32 {
                $crate::ABI_MINOR
            }
            #[no_mangle]
            pub extern "C" fn wingate_kinds() -> i32 {
                $crate::rt::kinds($make)
            }
            #[no_mangle]
            pub extern "C" fn wingate_buffer(size: i32) -> i32 {
                $crate::rt::buffer(size)
            }
            #[no_mangle]
            pub extern "C" fn wingate_init(size: i32) -> i64 {
                $crate::rt::init($make, size)
            }
            #[no_mangle]
            pub extern "C" fn wingate_decide(kind: i32, size: i32) -> i64 {
                $crate::rt::decide($make, kind, size)
            }
        };
    };
}
