// Package abi is the single source of truth for ABI v1 between the Wingate
// host and a WebAssembly policy: export and import names, kinds, the typed
// requests and decisions of each kind, and their flat binary encoding.
//
// Both sides use this package: the host encodes requests and decodes
// decisions, the guest SDK decodes requests and encodes decisions. It has no
// dependencies beyond the standard library so that it compiles for
// GOOS=wasip1 as well as natively. sdk/ABI.md is the prose contract and
// testdata/golden holds the vectors both sides are tested against.
package abi

// MajorVersion and MinorVersion identify ABI v1.0. A guest declares the
// major version by the name of its marker export (ExportMarker) and the
// minor version by that export's return value. Minor versions only add; the
// host accepts its own minor version and the one before it.
const (
	MajorVersion = 1
	MinorVersion = 0
)

// Names of the functions a policy module exports. See sdk/ABI.md for the
// signatures and who owns which memory.
const (
	// ExportMarker is "wingate_abi_v1" () -> i32: returns the minor version.
	ExportMarker = "wingate_abi_v1"
	// ExportKinds is () -> i32: a bit set of the kinds the module handles,
	// bit (1 << Kind).
	ExportKinds = "wingate_kinds"
	// ExportBuffer is (size i32) -> i32: returns the address of a
	// guest-owned buffer of at least size bytes, valid until the next call
	// into the module. The host writes the input of the next call there.
	ExportBuffer = "wingate_buffer"
	// ExportInit is (len i32) -> i64: the buffer holds the policy's
	// configuration bytes; returns a packed result (see PackResult).
	ExportInit = "wingate_init"
	// ExportDecide is (kind i32, len i32) -> i64: the buffer holds an
	// encoded request of that kind; returns a packed result whose payload
	// is a status byte followed by the encoded decision.
	ExportDecide = "wingate_decide"
	// ExportMemory is the guest's linear memory.
	ExportMemory = "memory"
)

// HostModule is the name of the import module the host provides.
const HostModule = "wingate"

// Names of the functions the host provides in HostModule.
const (
	// ImportLog is (level i32, ptr i32, len i32) -> (): logs the UTF-8
	// message at [ptr, ptr+len) at a slog level (-4 debug, 0 info,
	// 4 warn, 8 error).
	ImportLog = "log"
)

// Status is the first byte of every result payload.
type Status uint8

const (
	// StatusOK means the rest of the payload is the encoded decision (or,
	// for wingate_init, empty).
	StatusOK Status = 0
	// StatusError means the rest of the payload is a UTF-8 error message.
	StatusError Status = 1
)

// PackResult packs the address and length of a guest-owned result payload
// into the i64 returned by wingate_init and wingate_decide: the address in
// the high 32 bits, the length in the low 32 bits. For example a 9-byte
// payload at address 0x0001_2340 is returned as 0x0001_2340_0000_0009.
func PackResult(ptr, size uint32) uint64 { return uint64(ptr)<<32 | uint64(size) }

// UnpackResult is the inverse of PackResult.
func UnpackResult(v uint64) (ptr, size uint32) { return uint32(v >> 32), uint32(v) }

// Kind is a kind of policy decision.
type Kind uint8

// The kinds of policy. The numbers are part of the ABI.
const (
	KindCache    Kind = 1
	KindRoute    Kind = 2
	KindCompress Kind = 3
)

// Kinds lists every kind in ABI order.
var Kinds = [...]Kind{KindCache, KindRoute, KindCompress}

// String returns the kind's name as used in the policies file and the CLI.
func (k Kind) String() string {
	switch k {
	case KindCache:
		return "cache"
	case KindRoute:
		return "route"
	case KindCompress:
		return "compress"
	}
	return "kind(" + itoa(int(k)) + ")"
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds {
		if k.String() == s {
			return k, true
		}
	}
	return 0, false
}

// Bit returns the kind's bit in the set returned by wingate_kinds.
func (k Kind) Bit() uint32 { return 1 << k }

// CacheRequest asks whether and how to cache one API request.
type CacheRequest struct {
	Method string // HTTP method, upper case
	Route  string // route template, e.g. /api/users/:id/reputation
	Path   string // request path, e.g. /api/users/42/reputation
	Query  string // raw query string without '?'
	User   string // authenticated user id, empty when anonymous
}

// CacheAction says what the host does with a request.
type CacheAction uint8

const (
	CacheBypass CacheAction = 0 // go to the origin; store nothing
	CacheLookup CacheAction = 1 // look up Key, fill it from the origin on a miss
)

// Scope says for whom a cached entry is valid.
type Scope uint8

const (
	ScopeGlobal Scope = 0 // everyone
	ScopeUser   Scope = 1 // only the requesting user
)

// CacheDecision is the cache policy's answer.
type CacheDecision struct {
	Action       CacheAction
	Key          string
	TTLSeconds   uint32
	Scope        Scope
	StaleSeconds uint32   // how long past TTL a stale copy may be served
	Tags         []string // purge tags, e.g. user:42
}

// Purpose says why a message is sent to a model.
type Purpose uint8

const (
	PurposeChat       Purpose = 0
	PurposeAssessment Purpose = 1
)

// RouteRequest asks which model tier answers a chat message.
type RouteRequest struct {
	Message       string
	Purpose       Purpose
	HistoryTurns  uint32
	HistoryTokens uint32
}

// Tier is a model tier.
type Tier uint8

const (
	TierEconomy  Tier = 0
	TierStandard Tier = 1
	TierPremium  Tier = 2
)

// Tiers lists every tier in ABI order.
var Tiers = [...]Tier{TierEconomy, TierStandard, TierPremium}

// String returns the tier's name as used in policies files, configuration,
// metrics and the eval JSON: "economy", "standard" or "premium".
func (t Tier) String() string {
	switch t {
	case TierEconomy:
		return "economy"
	case TierStandard:
		return "standard"
	case TierPremium:
		return "premium"
	}
	return "tier(" + itoa(int(t)) + ")"
}

// ParseTier returns the tier named s. It is the one mapping from tier
// names to tiers; every other place converts through it.
func ParseTier(s string) (Tier, bool) {
	for _, t := range Tiers {
		if t.String() == s {
			return t, true
		}
	}
	return 0, false
}

// RouteDecision is the route policy's answer.
type RouteDecision struct {
	Tier   Tier
	Score  float64 // complexity in [0, 1]
	Reason string
}

// Role is the author of a chat message.
type Role uint8

const (
	RoleUser      Role = 0
	RoleAssistant Role = 1
	RoleSystem    Role = 2
)

// Message is one message of a conversation's history.
type Message struct {
	ID     string
	Role   Role
	Text   string
	Tokens uint32
}

// CompressRequest asks which history messages go verbatim into the context.
type CompressRequest struct {
	Messages     []Message
	Query        string // the new user message
	BudgetTokens uint32
}

// CompressDecision is the compress policy's answer. Keep holds indexes into
// the request's Messages, ascending; Tokens counts the kept messages plus
// the summary and never exceeds the budget.
type CompressDecision struct {
	Keep    []uint32
	Summary string
	Tokens  uint32
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
