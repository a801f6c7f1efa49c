// Package conformance checks a policy module against ABI v1 (sdk/ABI.md)
// the way a host relies on it, whatever language built it: `wingate
// policy conformance MODULE.wasm` prints its report.
//
// For every ABI minor version the host accepts, it runs:
//
//   - load: the host's own load path (package policy: validation, the
//     loop-guard rewrite, start-up and init with the configuration);
//   - marker and kinds: the marker's minor version and a non-empty,
//     stable kind set;
//   - init: the configuration accepted, and configuration that is not
//     JSON answered with a well-formed payload (an error status with a
//     message, or ok), never a trap;
//   - golden: every request vector of sdk/abi/testdata/golden of each
//     declared kind, answered with a decision whose bytes are checked
//     field by field (a wrong encoding is reported naming the field) and,
//     for compress, against the request as the host checks it;
//   - edge cases: empty, truncated and over-long input, enum bytes out of
//     range, list counts over the limit or past the end (each must be an
//     error status, not a trap or a decision), every fixed-size field at
//     its maximum, maximal inputs (long strings, the most messages), an
//     undeclared kind;
//   - repeated calls on one instance: the same decision each time, and
//     memory that stops growing;
//   - memory ownership: wingate_buffer ranges inside memory; the buffer
//     reused without asking again, as the host does; a decision that does
//     not depend on an earlier call's input (the host overwrites it).
//
// The raw checks run on plain wazero instances (see guest.go) so that
// they see the guest's bytes and addresses; load runs through package
// policy.
package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Options configure a run.
type Options struct {
	// Name labels the module in the report and the host's errors.
	Name string
	// Config is the configuration passed to init (the policies file's
	// "config" value); nil is no configuration.
	Config []byte
}

// Check is one line of the report.
type Check struct {
	Minor  uint32 `json:"abi_minor"`
	Kind   string `json:"kind,omitempty"`
	Name   string `json:"check"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail,omitempty"`
}

// Report is the result of a run.
type Report struct {
	Module string   `json:"module"`
	Minor  uint32   `json:"module_abi_minor"`
	Kinds  []string `json:"kinds"`
	Checks []Check  `json:"checks"`
	Passed int      `json:"passed"`
	Failed int      `json:"failed"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return r.Failed == 0 && r.Passed > 0 }

// Failures returns the failed checks.
func (r *Report) Failures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// WriteTable prints the report as a pass/fail table and a summary line.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ABI\tKIND\tCHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		res := "pass"
		if !c.Pass {
			res = "FAIL"
		}
		kind := c.Kind
		if kind == "" {
			kind = "-"
		}
		fmt.Fprintf(tw, "v1.%d\t%s\t%s\t%s\t%s\n", c.Minor, kind, c.Name, res, c.Detail)
	}
	tw.Flush()
	verdict := "ok  "
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s %s: %d passed, %d failed\n", verdict, r.Module, r.Passed, r.Failed)
}

// WriteJSON prints the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// AcceptedMinors are the guest minor versions the host accepts: its own
// and the one before (ABI.md §8).
func AcceptedMinors() []uint32 {
	n := uint32(abi.MinorVersion)
	if n == 0 {
		return []uint32{0}
	}
	return []uint32{n - 1, n}
}

// run carries the state of one Run.
type run struct {
	ctx    context.Context
	h      *harness
	opts   Options
	minor  uint32
	report *Report
}

func (r *run) add(kind abi.Kind, name string, err error) bool {
	c := Check{Minor: r.minor, Name: name, Pass: err == nil}
	if kind != 0 {
		c.Kind = kind.String()
	}
	if err != nil {
		c.Detail = err.Error()
		r.report.Failed++
	} else {
		r.report.Passed++
	}
	r.report.Checks = append(r.report.Checks, c)
	return err == nil
}

func (r *run) note(kind abi.Kind, name, detail string) {
	c := Check{Minor: r.minor, Name: name, Pass: true, Detail: detail}
	if kind != 0 {
		c.Kind = kind.String()
	}
	r.report.Passed++
	r.report.Checks = append(r.report.Checks, c)
}

// Run checks the module wasm. An error means the run itself could not
// start (a module wazero cannot compile is a failed check, not an error).
func Run(ctx context.Context, wasm []byte, opts Options) (*Report, error) {
	if opts.Name == "" {
		opts.Name = "module"
	}
	rep := &Report{Module: opts.Name}
	for _, minor := range AcceptedMinors() {
		r := &run{ctx: ctx, opts: opts, minor: minor, report: rep}
		if !r.add(0, "load (host path)", r.load(wasm)) {
			continue
		}
		h, err := newHarness(ctx, wasm)
		if err != nil {
			r.add(0, "compile", err)
			continue
		}
		r.h = h
		r.suite()
		h.Close(ctx)
	}
	return rep, nil
}

// load loads the module through the host's own path, with the config.
func (r *run) load(wasm []byte) error {
	rt, err := policy.NewRuntime(r.ctx, policy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	v, err := rt.Load(r.ctx, policy.Spec{Name: r.opts.Name, Config: r.opts.Config, Deadline: time.Second, MinInstances: 1, MaxInstances: 1}, wasm)
	if err != nil {
		return err
	}
	v.Close()
	<-v.Done()
	return nil
}

// fresh returns a started, configured instance.
func (r *run) fresh() (*guest, error) {
	g, err := r.h.instance(r.ctx)
	if err != nil {
		return nil, err
	}
	if _, err := g.call(r.ctx, g.marker, "wingate_abi_v1()"); err != nil {
		g.Close(r.ctx)
		return nil, err
	}
	if _, err := g.call(r.ctx, g.kinds, "wingate_kinds()"); err != nil {
		g.Close(r.ctx)
		return nil, err
	}
	st, msg, err := g.initialize(r.ctx, r.opts.Config)
	if err == nil && st != abi.StatusOK {
		err = fmt.Errorf("wingate_init refused the configuration: %q", msg)
	}
	if err != nil {
		g.Close(r.ctx)
		return nil, err
	}
	return g, nil
}

func (r *run) suite() {
	g, err := r.h.instance(r.ctx)
	if !r.add(0, "start (_initialize)", err) {
		return
	}
	defer func() { g.Close(r.ctx) }()
	mv, err := g.call(r.ctx, g.marker, "wingate_abi_v1()")
	if err == nil {
		r.report.Minor = uint32(mv)
		if uint32(mv) != r.minor && uint32(mv)+1 != r.minor {
			err = fmt.Errorf("wingate_abi_v1 returned minor version %d; a v1.%d host accepts %d and %d", int32(mv), r.minor, r.minor, max(int(r.minor)-1, 0))
		}
	}
	r.add(0, "marker", err)
	kv, err := g.call(r.ctx, g.kinds, "wingate_kinds()")
	set := uint32(kv)
	if err == nil {
		switch {
		case set == 0:
			err = errors.New("wingate_kinds returned 0: no kind handled (a Go policy registers in init, a Rust one in its export! function)")
		case set&^0x0e != 0:
			err = fmt.Errorf("wingate_kinds returned %#x: bits outside 0x0e", set)
		default:
			if again, err2 := g.call(r.ctx, g.kinds, "wingate_kinds()"); err2 != nil || uint32(again) != set {
				err = fmt.Errorf("wingate_kinds changed between calls: %#x then %#x (%v)", set, uint32(again), err2)
			}
		}
	}
	if !r.add(0, "kinds", err) {
		return
	}
	var kinds []abi.Kind
	r.report.Kinds = nil
	for _, k := range abi.Kinds {
		if set&k.Bit() != 0 {
			kinds = append(kinds, k)
			r.report.Kinds = append(r.report.Kinds, k.String())
		}
	}

	// Init: the configuration, then configuration that is not JSON on a
	// second instance.
	st, msg, err := g.initialize(r.ctx, r.opts.Config)
	if err == nil && st != abi.StatusOK {
		err = fmt.Errorf("wingate_init refused the configuration: %q", msg)
	}
	if !r.add(0, "init: configuration accepted", err) {
		return
	}
	r.add(0, "init: bad configuration answered, not trapped", r.badConfig())

	for _, k := range kinds {
		r.kindSuite(&g, k)
	}
	r.add(0, "undeclared kind is an error status", r.undeclared(g, set))
}

func (r *run) badConfig() error {
	for _, cfg := range [][]byte{[]byte("{not json"), {0xff, 0x00, 0xfe}, bytes.Repeat([]byte("["), 10000)} {
		g, err := r.h.instance(r.ctx)
		if err != nil {
			return err
		}
		if _, err := g.call(r.ctx, g.kinds, "wingate_kinds()"); err != nil {
			g.Close(r.ctx)
			return err
		}
		st, msg, err := g.initialize(r.ctx, cfg)
		g.Close(r.ctx)
		if err != nil {
			return fmt.Errorf("config %q: %w", abbrev(cfg), err)
		}
		if st == abi.StatusError && len(msg) == 0 {
			return fmt.Errorf("config %q: error status without a message", abbrev(cfg))
		}
	}
	return nil
}

func (r *run) undeclared(g *guest, set uint32) error {
	for _, k := range []abi.Kind{0, abi.KindCache, abi.KindRoute, abi.KindCompress, 4, 255} {
		if set&(1<<uint32(k)) != 0 && k != 0 {
			continue
		}
		st, _, err := g.decideRaw(r.ctx, k, nil)
		if err != nil {
			return err
		}
		if st != abi.StatusError {
			return fmt.Errorf("wingate_decide(%d, 0) for an undeclared kind returned status ok", k)
		}
	}
	return nil
}

func abbrev(b []byte) string {
	if len(b) > 16 {
		return string(b[:16]) + "..."
	}
	return string(b)
}

var requestFile = map[abi.Kind]string{
	abi.KindCache: "cache_request.json", abi.KindRoute: "route_request.json", abi.KindCompress: "compress_request.json",
}

// checkDecision checks the bytes of an ok decision for a request.
func checkDecision(kind abi.Kind, req, dec []byte) error {
	switch kind {
	case abi.KindCache:
		return checkCacheDecision(dec)
	case abi.KindRoute:
		return checkRouteDecision(dec)
	default:
		var q abi.CompressRequest
		if err := abi.DecodeCompressRequest(req, &q); err != nil {
			return fmt.Errorf("the request itself does not decode: %w", err)
		}
		return checkCompressDecision(dec, &q)
	}
}

// answer sends in and checks a well-formed answer: an ok decision whose
// bytes check, or (when errOK) an error status with a message.
func (r *run) answer(g *guest, kind abi.Kind, in []byte, errOK bool) (abi.Status, []byte, error) {
	st, body, err := g.decideRaw(r.ctx, kind, in)
	if err != nil {
		return st, body, err
	}
	if st == abi.StatusError {
		if !errOK {
			return st, body, fmt.Errorf("error status for a valid request: %q", abbrev(body))
		}
		if len(body) == 0 {
			return st, body, errors.New("error status without a message")
		}
		return st, body, nil
	}
	return st, body, checkDecision(kind, in, body)
}

// renew replaces g after a trap, as the host discards a trapped
// instance; it reports false when no instance starts.
func (r *run) renew(g **guest, err error) bool {
	if err == nil || !errors.Is(err, errTrap) {
		return true
	}
	(*g).Close(r.ctx)
	ng, ferr := r.fresh()
	if ferr != nil {
		r.add(0, "restart after a trap", ferr)
		return false
	}
	*g = ng
	return true
}

func (r *run) kindSuite(gp **guest, k abi.Kind) {
	g := *gp
	defer func() { *gp = g }()
	vectors, err := abi.GoldenVectors(requestFile[k])
	if !r.add(k, "golden vectors available", err) {
		return
	}
	var typical []byte
	for _, v := range vectors {
		in, err := v.Bytes()
		if err == nil && typical == nil {
			typical = in
		}
		if err == nil {
			_, _, err = r.answer(g, k, in, v.Name == "empty")
		}
		r.add(k, "golden "+strings.TrimSuffix(requestFile[k], ".json")+"/"+v.Name, err)
		if !r.renew(&g, err) {
			return
		}
	}
	if typical == nil {
		return
	}

	// Malformed input: an error status, never a decision or a trap.
	for _, e := range malformed(k, typical) {
		st, _, err := g.decideRaw(r.ctx, k, e.in)
		if err == nil && st != abi.StatusError {
			err = fmt.Errorf("%s (%d bytes) was decided (status ok); a decoder must refuse it", e.what, len(e.in))
		}
		r.add(k, "refuses "+e.what, err)
		if !r.renew(&g, err) {
			return
		}
	}

	// Fields at their limits and maximal inputs: a well-formed answer.
	for _, e := range extremes(k) {
		_, _, err := r.answer(g, k, e.in, true)
		if err != nil {
			err = fmt.Errorf("%s (%d bytes): %w", e.what, len(e.in), err)
		}
		r.add(k, "limits: "+e.what, err)
		if !r.renew(&g, err) {
			return
		}
	}

	r.add(k, "repeated calls on one instance", r.repeated(k, typical))
	r.add(k, "memory: input buffer reused without asking", r.reuse(k, vectors))
}

type input struct {
	what string
	in   []byte
}

func u32le(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func malformed(k abi.Kind, typical []byte) []input {
	out := []input{
		{"empty input", nil},
		{"truncated input (last byte missing)", typical[:len(typical)-1]},
		{"trailing byte", append(append([]byte(nil), typical...), 0)},
		{"string length past the end", append(u32le(0xffffffff), make([]byte, 32)...)},
	}
	switch k {
	case abi.KindRoute:
		out = append(out, input{"purpose out of range", slices(u32le(0), []byte{2}, u32le(0), u32le(0))})
	case abi.KindCompress:
		out = append(out,
			input{"message count over the limit", slices(u32le(0), u32le(0), u32le(abi.MaxListLen+1))},
			input{"message count past the end", slices(u32le(0), u32le(0), u32le(3), make([]byte, 13*2))},
			input{"role out of range", slices(u32le(0), u32le(0), u32le(1), u32le(0), []byte{3}, u32le(0), u32le(0))})
	}
	return out
}

func slices(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// extremes are valid requests with fields at their limits.
func extremes(k abi.Kind) []input {
	big := strings.Repeat("é", 1<<19) // 1 MiB of UTF-8
	switch k {
	case abi.KindCache:
		return []input{
			{"empty strings", abi.AppendCacheRequest(nil, &abi.CacheRequest{})},
			{"1 MiB in every string", abi.AppendCacheRequest(nil, &abi.CacheRequest{Method: "GET", Route: big, Path: big, Query: big + "&" + big, User: big})},
			{"known route, 1 MiB path, query and user", abi.AppendCacheRequest(nil, &abi.CacheRequest{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/" + big + "/reputation", Query: strings.Repeat("a=1&", 1<<16), User: big})},
		}
	case abi.KindRoute:
		return []input{
			{"u32 fields at their maximum", abi.AppendRouteRequest(nil, &abi.RouteRequest{Message: "hi", Purpose: abi.PurposeAssessment, HistoryTurns: ^uint32(0), HistoryTokens: ^uint32(0)})},
			{"4 MiB message", abi.AppendRouteRequest(nil, &abi.RouteRequest{Message: strings.Repeat(big, 4), HistoryTurns: 1})},
		}
	default:
		many := make([]abi.Message, abi.MaxListLen)
		for i := range many {
			many[i] = abi.Message{Role: abi.Role(i % 3), Tokens: 1}
		}
		return []input{
			{"budget at its maximum", abi.AppendCompressRequest(nil, &abi.CompressRequest{BudgetTokens: ^uint32(0), Query: "q", Messages: []abi.Message{{ID: "a", Tokens: ^uint32(0), Text: "x"}}})},
			{"zero budget", abi.AppendCompressRequest(nil, &abi.CompressRequest{Query: "q", Messages: []abi.Message{{ID: "a", Tokens: 5, Text: "hello"}}})},
			{"65,536 messages (the list limit)", abi.AppendCompressRequest(nil, &abi.CompressRequest{BudgetTokens: 1000, Query: "q", Messages: many})},
			{"1 MiB message text", abi.AppendCompressRequest(nil, &abi.CompressRequest{BudgetTokens: 1 << 20, Query: "q", Messages: []abi.Message{{ID: "a", Tokens: 1000, Text: big}}})},
		}
	}
}

// repeated makes 1,000 calls on one instance: the same decision each
// time, and memory that stops growing after the first 100.
func (r *run) repeated(k abi.Kind, in []byte) error {
	g, err := r.fresh()
	if err != nil {
		return err
	}
	defer g.Close(r.ctx)
	var first []byte
	var pages uint32
	for i := 0; i < 1000; i++ {
		st, body, err := r.answer(g, k, in, false)
		if err != nil {
			return fmt.Errorf("call %d: %w", i+1, err)
		}
		if st != abi.StatusOK {
			continue
		}
		if first == nil {
			first = body
		} else if !bytes.Equal(body, first) {
			return fmt.Errorf("call %d decided %x, call 1 decided %x: a decision must depend on its request and configuration only", i+1, body, first)
		}
		if i == 99 {
			pages = g.mem.Size() / 65536
		}
	}
	if grown := g.mem.Size()/65536 - pages; grown > 16 {
		return fmt.Errorf("memory grew by %d pages (%d KiB) over calls 100 to 1,000 of the same request: a leak", grown, grown*64)
	}
	return nil
}

// reuse writes each vector into the buffer asked for once (as the host
// does), poisoning it in between, and compares each decision with the
// one a fresh instance gives: a guest that moves or frees its input
// buffer, or keeps a view of an earlier input, answers differently.
func (r *run) reuse(k abi.Kind, vectors []abi.GoldenVector) error {
	g, err := r.fresh()
	if err != nil {
		return err
	}
	defer g.Close(r.ctx)
	if _, err := g.askBuffer(r.ctx, 1<<16); err != nil {
		return err
	}
	for round := 0; round < 2; round++ {
		for _, v := range vectors {
			in, _ := v.Bytes()
			if len(in) > 1<<16 {
				continue
			}
			ref, err := r.fresh()
			if err != nil {
				return err
			}
			wst, want, werr := ref.decideRaw(r.ctx, k, in)
			ref.Close(r.ctx)
			if werr != nil {
				return werr
			}
			if !g.mem.Write(g.bufAddr, in) {
				return fmt.Errorf("input buffer %#x+%d no longer inside memory", g.bufAddr, len(in))
			}
			st, got, err := g.decideWritten(r.ctx, k, uint32(len(in)))
			if err != nil {
				return fmt.Errorf("%s without asking for a buffer again: %w", v.Name, err)
			}
			if st != wst || !bytes.Equal(got, want) {
				return fmt.Errorf("%s after other requests in the same buffer decided %x (status %d), a fresh instance %x (status %d)", v.Name, got, st, want, wst)
			}
			g.mem.Write(g.bufAddr, bytes.Repeat([]byte{0xa5}, len(in)))
		}
	}
	return nil
}
