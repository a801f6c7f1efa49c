// Package policytest runs policy case files against anything that makes
// decisions: a loaded policy version, or plain Go functions. It is what
// `wingate policy test` runs, and what a policy's own Go tests call, in the
// manner of testing/fstest.
//
// # Case files
//
// A case file is a JSON array of cases:
//
//	[
//	  {"name": "small talk is cheap",
//	   "input": {"message": "hey, how are you?"},
//	   "want":  {"tier": "economy", "score_range": [0, 0.3]}}
//	]
//
// input is a request in the offline-evaluation JSON of docs/design.md (package
// evaljson); its kind is the one given to the runner or, when none is,
// inferred from the input's fields ("message": route, "messages":
// compress, "method"/"path": cache). want is a partial decision: only the
// fields present are compared. Besides the decision's own fields, want may
// hold, for route, "score_range": [lo, hi] instead of "score"; for
// compress, "must_keep": ["id", ...] (ids that must be among the kept) and
// "max_tokens". Every compress decision is also checked against the
// request's budget.
package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Decider makes decisions and reports failures as errors, without fallback:
// a test must see a broken policy, not its fail-open decision.
// *policy.Version implements it; Funcs adapts plain functions.
type Decider interface {
	Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, error)
	Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, error)
	Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, error)
}

// ErrNoHandler is returned by Funcs for a kind it has no function for.
var ErrNoHandler = errors.New("policytest: no handler for this kind")

// Funcs is a Decider made of Go functions, for testing a policy's logic
// natively or a reference implementation. A nil function fails with
// ErrNoHandler.
type Funcs struct {
	CacheFn    func(req abi.CacheRequest) (abi.CacheDecision, error)
	RouteFn    func(req abi.RouteRequest) (abi.RouteDecision, error)
	CompressFn func(req abi.CompressRequest) (abi.CompressDecision, error)
}

var _ Decider = Funcs{}

// Cache implements Decider.
func (f Funcs) Cache(_ context.Context, req *abi.CacheRequest) (abi.CacheDecision, error) {
	if f.CacheFn == nil {
		return abi.CacheDecision{}, fmt.Errorf("%w: cache", ErrNoHandler)
	}
	return f.CacheFn(*req)
}

// Route implements Decider.
func (f Funcs) Route(_ context.Context, req *abi.RouteRequest) (abi.RouteDecision, error) {
	if f.RouteFn == nil {
		return abi.RouteDecision{}, fmt.Errorf("%w: route", ErrNoHandler)
	}
	return f.RouteFn(*req)
}

// Compress implements Decider.
func (f Funcs) Compress(_ context.Context, req *abi.CompressRequest) (abi.CompressDecision, error) {
	if f.CompressFn == nil {
		return abi.CompressDecision{}, fmt.Errorf("%w: compress", ErrNoHandler)
	}
	return f.CompressFn(*req)
}

// Case is one case of a case file.
type Case struct {
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
	Want  json.RawMessage `json:"want"`
	// File is the case file the case came from (not part of the JSON).
	File string `json:"-"`
}

// LoadFile reads one case file.
func LoadFile(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var cases []Case
	if err := dec.Decode(&cases); err != nil {
		return nil, fmt.Errorf("policytest: %s: want a JSON array of {name, input, want}: %w", path, err)
	}
	for i := range cases {
		c := &cases[i]
		c.File = path
		if c.Name == "" {
			return nil, fmt.Errorf("policytest: %s: case %d: name: required", path, i)
		}
		if len(c.Input) == 0 {
			return nil, fmt.Errorf("policytest: %s: case %q: input: required", path, c.Name)
		}
		if len(c.Want) == 0 {
			return nil, fmt.Errorf("policytest: %s: case %q: want: required", path, c.Name)
		}
	}
	return cases, nil
}

// LoadDir reads every *.json file of dir, in name order.
func LoadDir(dir string) ([]Case, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("policytest: no case files (*.json) in %s", dir)
	}
	sort.Strings(paths)
	var all []Case
	for _, p := range paths {
		cs, err := LoadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, cs...)
	}
	return all, nil
}

// InferKind guesses the kind of an eval input from its fields.
func InferKind(input []byte) (abi.Kind, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(input, &m); err != nil {
		return 0, fmt.Errorf("policytest: input: want a JSON object: %w", err)
	}
	_, msg := m["message"]
	_, msgs := m["messages"]
	_, method := m["method"]
	_, path := m["path"]
	switch {
	case msgs && !msg:
		return abi.KindCompress, nil
	case msg && !msgs:
		return abi.KindRoute, nil
	case method || path:
		return abi.KindCache, nil
	}
	return 0, errors.New("policytest: cannot tell the input's kind (no message, messages, method or path field): give the kind")
}

// Decide parses one eval input of kind, asks d and returns the decision in
// eval JSON. It is one line of `wingate policy eval`.
func Decide(ctx context.Context, d Decider, kind abi.Kind, input []byte) (json.RawMessage, error) {
	switch kind {
	case abi.KindCache:
		req, err := evaljson.ParseCacheRequest(input)
		if err != nil {
			return nil, err
		}
		dec, err := d.Cache(ctx, &req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(evaljson.CacheDecisionJSON(&dec))
	case abi.KindRoute:
		req, err := evaljson.ParseRouteRequest(input)
		if err != nil {
			return nil, err
		}
		dec, err := d.Route(ctx, &req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(evaljson.RouteDecisionJSON(&dec))
	case abi.KindCompress:
		req, err := evaljson.ParseCompressRequest(input)
		if err != nil {
			return nil, err
		}
		dec, err := d.Compress(ctx, &req)
		if err != nil {
			return nil, err
		}
		j, err := evaljson.CompressDecisionJSON(&dec, &req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(j)
	}
	return nil, fmt.Errorf("policytest: unknown kind %v", kind)
}

// Result is the outcome of one case.
type Result struct {
	Case Case
	Kind abi.Kind
	// Got is the decision in eval JSON; empty when the call failed.
	Got json.RawMessage
	// Diffs lists the mismatches, one line each: "field: got X, want Y".
	Diffs []string
	// Err is a failure to run the case: bad input or want, or a policy
	// error.
	Err error
}

// Passed reports whether the case passed.
func (r Result) Passed() bool { return r.Err == nil && len(r.Diffs) == 0 }

// String formats the result: one line when it passed, with the diff, the
// input and the decision when it failed.
func (r Result) String() string {
	var b strings.Builder
	where := filepath.Base(r.Case.File)
	if r.Passed() {
		fmt.Fprintf(&b, "PASS %s: %s", where, r.Case.Name)
		return b.String()
	}
	fmt.Fprintf(&b, "FAIL %s: %s (%v)\n", where, r.Case.Name, r.Kind)
	if r.Err != nil {
		fmt.Fprintf(&b, "    error: %v\n", r.Err)
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(&b, "    %s\n", d)
	}
	fmt.Fprintf(&b, "    input: %s\n", compact(r.Case.Input))
	if len(r.Got) > 0 {
		fmt.Fprintf(&b, "    got:   %s\n", compact(r.Got))
	}
	fmt.Fprintf(&b, "    want:  %s", compact(r.Case.Want))
	return b.String()
}

func compact(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	s := b.String()
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// RunCase runs one case against d. kind zero means: infer it from the
// input.
func RunCase(ctx context.Context, d Decider, kind abi.Kind, c Case) Result {
	r := Result{Case: c, Kind: kind}
	if kind == 0 {
		k, err := InferKind(c.Input)
		if err != nil {
			r.Err = err
			return r
		}
		r.Kind = k
	}
	switch r.Kind {
	case abi.KindCache:
		r.Got, r.Diffs, r.Err = runCache(ctx, d, c)
	case abi.KindRoute:
		r.Got, r.Diffs, r.Err = runRoute(ctx, d, c)
	case abi.KindCompress:
		r.Got, r.Diffs, r.Err = runCompress(ctx, d, c)
	default:
		r.Err = fmt.Errorf("policytest: unknown kind %v", r.Kind)
	}
	return r
}

// RunAll runs every case and returns the results in order.
func RunAll(ctx context.Context, d Decider, kind abi.Kind, cases []Case) []Result {
	out := make([]Result, 0, len(cases))
	for _, c := range cases {
		out = append(out, RunCase(ctx, d, kind, c))
	}
	return out
}

// Run loads the case files of dir and runs each case as a subtest of t
// against d, inferring each case's kind. A failing case reports its diff.
func Run(t *testing.T, d Decider, dir string) {
	t.Helper()
	cases, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(c.File), ".json")+"/"+c.Name, func(t *testing.T) {
			if r := RunCase(t.Context(), d, 0, c); !r.Passed() {
				t.Error(r.String())
			}
		})
	}
}

func strictWant(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("policytest: want: %w", err)
	}
	return nil
}

func diff[T comparable](diffs []string, field string, got T, want *T) []string {
	if want != nil && got != *want {
		return append(diffs, fmt.Sprintf("%s: got %s, want %s", field, show(got), show(*want)))
	}
	return diffs
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// listDiff compares lists in order and names what is missing and extra.
func listDiff(diffs []string, field string, got, want []string) []string {
	if slices.Equal(got, want) {
		return diffs
	}
	line := fmt.Sprintf("%s: got %s, want %s", field, show(got), show(want))
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(missing) > 0 {
		line += fmt.Sprintf("; missing %s", show(missing))
	}
	if len(extra) > 0 {
		line += fmt.Sprintf("; extra %s", show(extra))
	}
	if len(missing) == 0 && len(extra) == 0 {
		line += "; same items, different order"
	}
	return append(diffs, line)
}

type cacheWant struct {
	Action *string   `json:"action"`
	Key    *string   `json:"key"`
	TTL    *uint32   `json:"ttl_s"`
	Scope  *string   `json:"scope"`
	Stale  *uint32   `json:"stale_s"`
	Tags   *[]string `json:"tags"`
}

func runCache(ctx context.Context, d Decider, c Case) (json.RawMessage, []string, error) {
	var w cacheWant
	if err := strictWant(c.Want, &w); err != nil {
		return nil, nil, err
	}
	req, err := evaljson.ParseCacheRequest(c.Input)
	if err != nil {
		return nil, nil, fmt.Errorf("input: %w", err)
	}
	dec, err := d.Cache(ctx, &req)
	if err != nil {
		return nil, nil, err
	}
	g := evaljson.CacheDecisionJSON(&dec)
	got, _ := json.Marshal(g)
	var diffs []string
	diffs = diff(diffs, "action", g.Action, w.Action)
	diffs = diff(diffs, "key", g.Key, w.Key)
	diffs = diff(diffs, "ttl_s", g.TTL, w.TTL)
	diffs = diff(diffs, "scope", g.Scope, w.Scope)
	diffs = diff(diffs, "stale_s", g.Stale, w.Stale)
	if w.Tags != nil {
		diffs = listDiff(diffs, "tags", g.Tags, *w.Tags)
	}
	return got, diffs, nil
}

type routeWant struct {
	Tier       *string     `json:"tier"`
	Score      *float64    `json:"score"`
	ScoreRange *[2]float64 `json:"score_range"`
	Reason     *string     `json:"reason"`
}

func runRoute(ctx context.Context, d Decider, c Case) (json.RawMessage, []string, error) {
	var w routeWant
	if err := strictWant(c.Want, &w); err != nil {
		return nil, nil, err
	}
	if w.ScoreRange != nil && w.ScoreRange[0] > w.ScoreRange[1] {
		return nil, nil, fmt.Errorf("policytest: want: score_range [%v, %v]: lower bound above upper", w.ScoreRange[0], w.ScoreRange[1])
	}
	req, err := evaljson.ParseRouteRequest(c.Input)
	if err != nil {
		return nil, nil, fmt.Errorf("input: %w", err)
	}
	dec, err := d.Route(ctx, &req)
	if err != nil {
		return nil, nil, err
	}
	g := evaljson.RouteDecisionJSON(&dec)
	got, _ := json.Marshal(g)
	var diffs []string
	diffs = diff(diffs, "tier", g.Tier, w.Tier)
	diffs = diff(diffs, "score", g.Score, w.Score)
	if r := w.ScoreRange; r != nil && !(g.Score >= r[0] && g.Score <= r[1]) {
		diffs = append(diffs, fmt.Sprintf("score: got %v, want within [%v, %v]", g.Score, r[0], r[1]))
	}
	diffs = diff(diffs, "reason", g.Reason, w.Reason)
	return got, diffs, nil
}

type compressWant struct {
	Keep      *[]string `json:"keep"`
	Summary   *string   `json:"summary"`
	Tokens    *uint32   `json:"tokens"`
	MustKeep  []string  `json:"must_keep"`
	MaxTokens *uint32   `json:"max_tokens"`
}

func runCompress(ctx context.Context, d Decider, c Case) (json.RawMessage, []string, error) {
	var w compressWant
	if err := strictWant(c.Want, &w); err != nil {
		return nil, nil, err
	}
	req, err := evaljson.ParseCompressRequest(c.Input)
	if err != nil {
		return nil, nil, fmt.Errorf("input: %w", err)
	}
	for _, id := range w.MustKeep {
		if !slices.ContainsFunc(req.Messages, func(m abi.Message) bool { return m.ID == id }) {
			return nil, nil, fmt.Errorf("policytest: want: must_keep: %q is not the id of a message of the input", id)
		}
	}
	dec, err := d.Compress(ctx, &req)
	if err != nil {
		return nil, nil, err
	}
	g, err := evaljson.CompressDecisionJSON(&dec, &req)
	if err != nil {
		return nil, nil, err
	}
	got, _ := json.Marshal(g)
	var diffs []string
	if g.Tokens > req.BudgetTokens {
		diffs = append(diffs, fmt.Sprintf("tokens: got %d, over the budget of %d", g.Tokens, req.BudgetTokens))
	}
	if w.Keep != nil {
		diffs = listDiff(diffs, "keep", g.Keep, *w.Keep)
	}
	var missing []string
	for _, id := range w.MustKeep {
		if !slices.Contains(g.Keep, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		diffs = append(diffs, fmt.Sprintf("must_keep: %s not kept (kept %s)", show(missing), show(g.Keep)))
	}
	diffs = diff(diffs, "summary", g.Summary, w.Summary)
	diffs = diff(diffs, "tokens", g.Tokens, w.Tokens)
	if w.MaxTokens != nil && g.Tokens > *w.MaxTokens {
		diffs = append(diffs, fmt.Sprintf("tokens: got %d, want at most %d", g.Tokens, *w.MaxTokens))
	}
	return got, diffs, nil
}

// ShippedConfig returns the configuration of the first entry of kind in
// the repository's policies/policies.json (found above the working
// directory), the configuration a policy's tests check it with. A file
// or entry that is missing fails the test: the file is part of the
// repository.
func ShippedConfig(tb testing.TB, kind string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(testkit.RepoRoot(tb), "policies", "policies.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var f struct {
		Policies []struct {
			Kind   string          `json:"kind"`
			Config json.RawMessage `json:"config"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		tb.Fatalf("policies/policies.json: %v", err)
	}
	for _, p := range f.Policies {
		if p.Kind == kind {
			return p.Config
		}
	}
	tb.Fatalf("policies/policies.json has no %s entry", kind)
	return nil
}
