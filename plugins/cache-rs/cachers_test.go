// Package cachers holds the Go tests and benchmarks of the Rust cache
// policy (the crate in this directory): the Go policy's case files run
// against the Rust module with `wingate policy test`, a differential test
// against the Go rules, and the decision benchmark Go vs Rust vs a guest
// that does no work, through the host's Engine.
package cachers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wingman-app/wingate/host/cli"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/conformance/testguest"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/cache/rules"
	"github.com/wingman-app/wingate/sdk/abi"
)

var (
	buildOnce sync.Map // dir -> path
)

func module(tb testing.TB, dir string) string {
	if p, ok := buildOnce.Load(dir); ok {
		return p.(string)
	}
	p := buildtest.Build(tb, dir)
	// Keep a copy outside the test's temporary directory for later tests.
	keep := filepath.Join(os.TempDir(), fmt.Sprintf("wingate-cachers-%d-%s.wasm", os.Getpid(), filepath.Base(dir)))
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keep, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	buildOnce.Store(dir, keep)
	return keep
}

// TestGoCasesAgainstRustModule runs the Go policy's case files against the
// Rust module, with the shipped configuration and with the defaults,
// through `wingate policy test`.
func TestGoCasesAgainstRustModule(t *testing.T) {
	wasm := module(t, ".")
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, policytest.ShippedConfig(t, "cache"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := filepath.Join("..", "cache", "testdata", "cases")
	for _, args := range [][]string{
		{"policy", "test", "-v", "--policy", wasm, "--config", cfg, cases},
		{"policy", "test", "--policy", wasm, cases},
	} {
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
		if code != 0 || !strings.Contains(out.String(), "cases passed") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		if strings.Contains(strings.Join(args, " "), "-v") && strings.Count(out.String(), "PASS ") < 10 {
			t.Fatalf("too few cases ran:\n%s", out.String())
		}
	}
}

// randomRequest draws a request around the configured routes: known and
// unknown routes and methods, users (none, normal, unsafe for a tag),
// queries with reordered and empty pairs, parameters with braces.
func randomRequest(r *rand.Rand) abi.CacheRequest {
	routes := []string{"/api/challenges", "/api/challenges/:id", "/api/users/:id/reputation", "/api/users/:id/matches",
		"/api/users/:id/location", "/api/challenges/:id/complete", "/api/other", "/"}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	route := pick(routes...)
	id := pick("42", "7", "", "{x}", "a\x01b", strings.Repeat("9", 129), "é")
	path := strings.ReplaceAll(route, ":id", id)
	var q []string
	for i := r.IntN(4); i > 0; i-- {
		q = append(q, pick("a=1", "b=2", "", "z=", "limit=20", "c=%20"))
	}
	return abi.CacheRequest{
		Method: pick("GET", "GET", "POST", "PUT", "get"),
		Route:  route, Path: path, Query: strings.Join(q, "&"),
		User: pick("", "42", "7", "{u}", strings.Repeat("1", 200)),
	}
}

// TestRustDecidesLikeGo: 5,000 random requests, the Rust module's
// decision through the host equals the Go rules' decision.
func TestRustDecidesLikeGo(t *testing.T) {
	ctx := context.Background()
	cfg := policytest.ShippedConfig(t, "cache")
	goRules, err := rules.Parse(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(module(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	v, err := rt.Load(ctx, policy.Spec{Name: "cache-rs", Config: cfg, Deadline: time.Second, MinInstances: 1, MaxInstances: 1}, wasm)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r := rand.New(rand.NewPCG(1, 2))
	lookups := 0
	for i := 0; i < 5000; i++ {
		req := randomRequest(r)
		got, err := v.Cache(ctx, &req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		want := goRules.Decide(&req)
		if len(want.Tags) == 0 {
			want.Tags = nil
		}
		if len(got.Tags) == 0 {
			got.Tags = nil
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Fatalf("%+v:\nrust %+v\ngo   %+v", req, got, want)
		}
		if got.Action == abi.CacheLookup {
			lookups++
		}
	}
	if lookups < 500 {
		t.Fatalf("only %d lookups: the generator misses the rules", lookups)
	}
}

// ---- benchmarks ----

// cpuTime is the process's CPU time: on a shared machine, wall time per
// operation also counts time spent waiting for a core; cpu-ns/op does not
// (it includes the watchdog and the GC).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchReq = abi.CacheRequest{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/42/reputation", User: "42"}

type subject struct {
	name string
	wasm []byte
	cfg  []byte
}

func subjects(b *testing.B) []subject {
	read := func(p string) []byte {
		w, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return w
	}
	cfg := policytest.ShippedConfig(b, "cache")
	// The "const" guest answers the default policy's own decision for
	// benchReq to every request: rust − const is the policy's own work,
	// const − noop the host's cost of decoding a lookup's key and tags.
	goRules, err := rules.Parse(cfg)
	if err != nil {
		b.Fatal(err)
	}
	benchDecision := goRules.Decide(&benchReq)
	return []subject{
		{"noop", testguest.NoopCache(), nil},
		{"const", testguest.ConstantCache(&benchDecision), nil},
		{"rust", read(module(b, ".")), cfg},
		{"go", read(module(b, filepath.Join("..", "cache"))), cfg},
	}
}

// cacheEngine returns an engine whose cache policy is the subject's
// module, loaded with one instance into a runtime of its own; both are
// closed when the benchmark ends.
func cacheEngine(b *testing.B, s subject) *policy.Engine {
	b.Helper()
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	v, err := rt.Load(ctx, policy.Spec{Name: s.name, Config: s.cfg, Deadline: time.Second, MinInstances: 1, MaxInstances: 1}, s.wasm)
	if err != nil {
		b.Fatal(err)
	}
	e := policy.NewEngine(policy.EngineOptions{Logger: slog.New(slog.DiscardHandler)})
	b.Cleanup(e.Close)
	if _, err := e.Activate(abi.KindCache, v); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCacheDecision is issue 19's first figure: one cache decision
// through the host's real call path (Engine → Version → pool → guarded
// guest code → decode), for the default cache policy in Go and in Rust
// and for a hand-assembled guest that does no work (the engine's own
// cost), in one run:
//
//	go test ./plugins/cache-rs -run '^$' -bench CacheDecision -benchmem
//
// Each sub-benchmark also reports the module's size in bytes.
func BenchmarkCacheDecision(b *testing.B) {
	ctx := context.Background()
	for _, s := range subjects(b) {
		b.Run(s.name, func(b *testing.B) {
			e := cacheEngine(b, s)
			if d, r := e.Cache(ctx, &benchReq); r.Outcome != policy.OutcomeOK || (s.name != "noop" && d.Key != "u=42|/api/users/42/reputation") {
				b.Fatalf("%v %+v", r.Outcome, d)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, r := e.Cache(ctx, &benchReq); r.Outcome != policy.OutcomeOK {
					b.Fatal(r.Outcome)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(s.wasm)), "module-bytes")
		})
	}
}

// BenchmarkInstantiate is the cost of one new instance of each module
// (instantiate, _initialize, wingate_init with the configuration), on
// wazero with the module compiled once, and the linear memory an
// instance holds after init (mem-KiB).
func BenchmarkInstantiate(b *testing.B) {
	ctx := context.Background()
	for _, s := range subjects(b) {
		b.Run(s.name, func(b *testing.B) {
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			if _, err := rt.NewHostModuleBuilder(abi.HostModule).NewFunctionBuilder().
				WithFunc(func(context.Context, api.Module, uint32, uint32, uint32) {}).Export(abi.ImportLog).Instantiate(ctx); err != nil {
				b.Fatal(err)
			}
			wasi_snapshot_preview1.MustInstantiate(ctx, rt)
			c, err := rt.CompileModule(ctx, s.wasm)
			if err != nil {
				b.Fatal(err)
			}
			var mem uint32
			n := 0
			b.ResetTimer()
			for b.Loop() {
				n++
				m, err := rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName(fmt.Sprint(n)).WithStartFunctions())
				if err != nil {
					b.Fatal(err)
				}
				if f := m.ExportedFunction("_initialize"); f != nil {
					if _, err := f.Call(ctx); err != nil {
						b.Fatal(err)
					}
				}
				m.ExportedFunction(abi.ExportKinds).Call(ctx)
				size := uint64(max(len(s.cfg), 1))
				p, err := m.ExportedFunction(abi.ExportBuffer).Call(ctx, size)
				if err != nil {
					b.Fatal(err)
				}
				m.Memory().Write(uint32(p[0]), s.cfg)
				res, err := m.ExportedFunction(abi.ExportInit).Call(ctx, uint64(len(s.cfg)))
				if err != nil {
					b.Fatal(err)
				}
				ptr, l := abi.UnpackResult(res[0])
				if st, _ := m.Memory().ReadByte(ptr); st != 0 || l == 0 {
					b.Fatalf("init status %d", st)
				}
				mem = m.Memory().Size()
				m.Close(ctx)
			}
			b.ReportMetric(float64(mem)/1024, "mem-KiB")
		})
	}
}

// BenchmarkCacheDecisionRounds is BenchmarkCacheDecision made robust to a
// shared, noisy machine: every operation is one round in which each
// guest (no-op, Rust, Go) answers 500 lookups and 500 misses (a route
// without a rule) in turn, through the Engine; the metrics are the
// medians over the rounds of each guest's CPU-ns per decision, and the
// Rust and Go medians over the no-op one (the engine's own cost):
//
//	go test ./plugins/cache-rs -run '^$' -bench CacheDecisionRounds -benchtime 40x
//
// WINGATE_CACHERS_EXTRA=name=path.wasm[,...] adds modules (an earlier
// build of the Rust policy, say) to the same rounds.
func BenchmarkCacheDecisionRounds(b *testing.B) {
	ctx := context.Background()
	subs := subjects(b)
	if extra := os.Getenv("WINGATE_CACHERS_EXTRA"); extra != "" {
		for _, kv := range strings.Split(extra, ",") {
			name, path, ok := strings.Cut(kv, "=")
			w, err := os.ReadFile(path)
			if !ok || err != nil {
				b.Fatalf("WINGATE_CACHERS_EXTRA: %q: want name=path.wasm (%v)", kv, err)
			}
			subs = append(subs, subject{name, w, policytest.ShippedConfig(b, "cache")})
		}
	}
	reqs := []struct {
		name string
		req  abi.CacheRequest
	}{
		{"lookup", benchReq},
		{"miss", abi.CacheRequest{Method: "GET", Route: "/api/other", Path: "/api/other", User: "42"}},
	}
	engines := make([]*policy.Engine, len(subs))
	for i, s := range subs {
		e := cacheEngine(b, s)
		// The extra modules may be stubs; the two policies must decide.
		if d, r := e.Cache(ctx, &benchReq); r.Outcome != policy.OutcomeOK || ((s.name == "rust" || s.name == "go") && d.Key != "u=42|/api/users/42/reputation") {
			b.Fatalf("%s: %v %+v", s.name, r.Outcome, d)
		}
		engines[i] = e
	}
	const perRound = 500
	ns := make(map[string][]float64)
	for b.Loop() {
		for _, rq := range reqs {
			for i, s := range subs {
				c0 := cpuTime()
				for range perRound {
					if _, r := engines[i].Cache(ctx, &rq.req); r.Outcome != policy.OutcomeOK {
						b.Fatal(r.Outcome)
					}
				}
				k := rq.name + "/" + s.name
				ns[k] = append(ns[k], float64(cpuTime()-c0)/perRound)
			}
		}
	}
	median := func(x []float64) float64 {
		slices.Sort(x)
		return x[len(x)/2]
	}
	for _, rq := range reqs {
		base := median(ns[rq.name+"/noop"])
		for _, s := range subs {
			m := median(ns[rq.name+"/"+s.name])
			b.ReportMetric(m, rq.name+"-"+s.name+"-cpu-ns")
			if s.name != "noop" {
				b.ReportMetric(m/base, rq.name+"-"+s.name+"/noop")
				b.ReportMetric(m-base, rq.name+"-"+s.name+"-over-noop-ns")
			}
			if s.name == "rust" || s.name == "go" {
				b.ReportMetric(m-median(ns[rq.name+"/const"]), rq.name+"-"+s.name+"-over-const-ns")
			}
		}
	}
}
