// Package sdk is what a Wingate policy author imports. A policy is a Go
// program built for GOOS=wasip1 as a reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o route.wasm ./myroute
//
// The author writes one typed function per kind of decision and registers
// it from an init function:
//
//	func init() {
//		sdk.OnInit(func(config []byte) error { return json.Unmarshal(config, &cfg) })
//		sdk.HandleRoute(func(req sdk.RouteRequest) (sdk.RouteDecision, error) {
//			return sdk.RouteDecision{Tier: sdk.TierEconomy, Score: 0.1, Reason: "small talk"}, nil
//		})
//	}
//
//	func main() {}
//
// # Register in init, not in main
//
// A module built with -buildmode=c-shared is a WASI reactor: the host runs
// its _initialize export, which starts the Go runtime and runs every
// package's init functions, but main.main is never called. Handlers
// registered in main are therefore never seen and the host refuses the
// module ("wingate_kinds returned 0"). main must exist and may stay empty.
//
// # What the SDK does for the author
//
// The SDK implements the exports of ABI v1 (see sdk/ABI.md and package
// sdk/abi): it owns the input and output buffers, decodes the binary
// request, calls the handler, encodes its decision and packs the result.
// Author code never sees a pointer, a length or a status code. A handler
// that returns an error or panics makes the host serve the kind's fail-open
// decision for that call. Buffers are reused between calls, so a request
// and the slices inside it are valid only until the handler returns; copy
// what must outlive the call.
//
// Policies get no file system, network, environment, real clock or real
// randomness; they log with LogDebug, LogInfo, LogWarn and LogError, which
// the host forwards to its structured log tagged with the policy.
//
// The same code compiles natively, so handlers are unit-tested with go
// test: CallInit, CallCache, CallRoute and CallCompress run a registered
// handler through the same binary encoding the host uses.
package sdk

import (
	"errors"
	"fmt"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Request and decision types of each kind; see package abi for the fields.
type (
	CacheRequest     = abi.CacheRequest
	CacheDecision    = abi.CacheDecision
	RouteRequest     = abi.RouteRequest
	RouteDecision    = abi.RouteDecision
	CompressRequest  = abi.CompressRequest
	CompressDecision = abi.CompressDecision
	Message          = abi.Message
	Kind             = abi.Kind
)

// Enumerations used in requests and decisions.
const (
	CacheBypass       = abi.CacheBypass
	CacheLookup       = abi.CacheLookup
	ScopeGlobal       = abi.ScopeGlobal
	ScopeUser         = abi.ScopeUser
	PurposeChat       = abi.PurposeChat
	PurposeAssessment = abi.PurposeAssessment
	TierEconomy       = abi.TierEconomy
	TierStandard      = abi.TierStandard
	TierPremium       = abi.TierPremium
	RoleUser          = abi.RoleUser
	RoleAssistant     = abi.RoleAssistant
	RoleSystem        = abi.RoleSystem
	KindCache         = abi.KindCache
	KindRoute         = abi.KindRoute
	KindCompress      = abi.KindCompress
)

// Handler function types, one per kind.
type (
	// CacheFunc decides whether and how to cache one API request. The
	// strings of req are views of the host's input buffer, valid only
	// until the function returns: use strings.Clone to keep one (strings
	// in the returned decision are copied, so returning them is fine).
	// This keeps a cache decision free of allocation.
	CacheFunc func(req CacheRequest) (CacheDecision, error)
	// RouteFunc chooses the model tier for one chat message. As for
	// CacheFunc, req.Message is valid only until the function returns.
	RouteFunc func(req RouteRequest) (RouteDecision, error)
	// CompressFunc chooses which history messages enter the context. Its
	// request's strings are copies the function may keep (for example to
	// remember messages already analysed, since a chat resends its history
	// every turn).
	CompressFunc func(req CompressRequest) (CompressDecision, error)
	// InitFunc receives the policy's configuration bytes (the raw JSON
	// value of "config" in the policies file) once per instance, before
	// any decision. Returning an error makes the host refuse the policy.
	InitFunc func(config []byte) error
)

// The module's handlers. A policy registers them from init functions,
// which run before the host makes any call; after that they are only read.
var (
	cacheFn    CacheFunc
	routeFn    RouteFunc
	compressFn CompressFunc
	initFn     InitFunc
)

// HandleCache registers the cache handler; a later call replaces it.
func HandleCache(fn CacheFunc) { cacheFn = fn }

// HandleRoute registers the route handler; a later call replaces it.
func HandleRoute(fn RouteFunc) { routeFn = fn }

// HandleCompress registers the compress handler; a later call replaces it.
func HandleCompress(fn CompressFunc) { compressFn = fn }

// OnInit registers the configuration handler; a later call replaces it.
// Without one, configuration bytes are ignored.
func OnInit(fn InitFunc) { initFn = fn }

// Configured is a policy's state built from its configuration: by the
// init handler Configure registers, or from the defaults (a nil
// configuration) when a decision comes before any init.
type Configured[T any] struct {
	build func(config []byte) (T, error)
	v     T
	ok    bool
}

// Configure registers an init handler (replacing any other) that builds
// the policy's state from its configuration with build, and returns the
// state's holder for the decision handlers to read.
func Configure[T any](build func(config []byte) (T, error)) *Configured[T] {
	c := &Configured[T]{build: build}
	OnInit(c.init)
	return c
}

func (c *Configured[T]) init(config []byte) error {
	v, err := c.build(config)
	if err != nil {
		return err
	}
	c.v, c.ok = v, true
	return nil
}

// Get returns the state, building it from the defaults first when init
// has not run.
func (c *Configured[T]) Get() (T, error) {
	if !c.ok {
		if err := c.init(nil); err != nil {
			var zero T
			return zero, err
		}
	}
	return c.v, nil
}

// kinds returns the bit set of kinds with a registered handler.
func kinds() uint32 {
	var k uint32
	if cacheFn != nil {
		k |= abi.KindCache.Bit()
	}
	if routeFn != nil {
		k |= abi.KindRoute.Bit()
	}
	if compressFn != nil {
		k |= abi.KindCompress.Bit()
	}
	return k
}

// dispatcher holds the reusable state of one module: decoded requests and
// the output buffer. A module is single-threaded, so one is enough.
type dispatcher struct {
	cacheReq    CacheRequest
	routeReq    RouteRequest
	compressReq CompressRequest
	out         []byte
}

var errNoHandler = errors.New("no handler registered for this kind")

// fail replaces the output with an error payload.
func (d *dispatcher) fail(err error) []byte {
	d.out = append(d.out[:0], byte(abi.StatusError))
	d.out = append(d.out, err.Error()...)
	return d.out
}

// initialize runs the init handler on config and returns the payload.
func (d *dispatcher) initialize(config []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			out = d.fail(fmt.Errorf("panic in init handler: %v", r))
		}
	}()
	if initFn != nil {
		if err := initFn(append([]byte(nil), config...)); err != nil {
			return d.fail(err)
		}
	}
	d.out = append(d.out[:0], byte(abi.StatusOK))
	return d.out
}

// decide decodes in as a request of kind, calls its handler and returns
// the payload: a status byte and the encoded decision or error message.
func (d *dispatcher) decide(kind abi.Kind, in []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			out = d.fail(fmt.Errorf("panic in %s handler: %v", kind, r))
		}
	}()
	switch kind {
	case abi.KindCache:
		if cacheFn == nil {
			return d.fail(errNoHandler)
		}
		if err := decodeCacheRequest(in, &d.cacheReq); err != nil {
			return d.fail(err)
		}
		dec, err := cacheFn(d.cacheReq)
		if err != nil {
			return d.fail(err)
		}
		d.out = abi.AppendCacheDecision(append(d.out[:0], byte(abi.StatusOK)), &dec)
	case abi.KindRoute:
		if routeFn == nil {
			return d.fail(errNoHandler)
		}
		if err := decodeRouteRequest(in, &d.routeReq); err != nil {
			return d.fail(err)
		}
		dec, err := routeFn(d.routeReq)
		if err != nil {
			return d.fail(err)
		}
		d.out = abi.AppendRouteDecision(append(d.out[:0], byte(abi.StatusOK)), &dec)
	case abi.KindCompress:
		if compressFn == nil {
			return d.fail(errNoHandler)
		}
		if err := decodeCompressRequest(in, &d.compressReq); err != nil {
			return d.fail(err)
		}
		dec, err := compressFn(d.compressReq)
		if err != nil {
			return d.fail(err)
		}
		d.out = abi.AppendCompressDecision(append(d.out[:0], byte(abi.StatusOK)), &dec)
	default:
		return d.fail(fmt.Errorf("unknown kind %d", kind))
	}
	return d.out
}
