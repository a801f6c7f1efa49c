package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/policy/conformance"
	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/host/policy/policybuild"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The policy author's loop: build a Go or Rust policy source directory,
// test it (building first when stale), watch it, and check any module
// against the ABI.
//
// A policy source directory holds a Go main package or a Rust crate
// (Cargo.toml), its cases in testdata/cases/*.json and optionally its
// configuration in config.json. `policy build DIR` writes DIR/<name>.wasm
// (name: the directory's base name), next to the configuration.

func init() {
	policyCommands["build"] = command{summary: "build a Go or Rust policy source directory into a module", run: runPolicyBuild}
	policyCommands["conformance"] = command{summary: "check a module against the ABI: golden vectors, edge cases, memory ownership", run: runPolicyConformance}
}

// authorModule is where `policy build DIR` writes the module.
func authorModule(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Join(dir, filepath.Base(abs)+".wasm")
}

// isPolicySource reports whether dir holds a Go or Rust policy source.
func isPolicySource(dir string) bool {
	_, err := policybuild.Detect(dir)
	return err == nil
}

func runPolicyBuild(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy build", std)
	out := fs.String("o", "", "output module; default: DIR/<name>.wasm, next to DIR/config.json")
	quick := fs.Bool("quick", false, "build faster, run slower (Rust: no LTO): for the edit-test loop")
	target := fs.String("target", policybuild.RustTarget, "Rust target: "+policybuild.RustTarget+" (no WASI imports) or wasm32-wasi")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy build [-o FILE.wasm] [--quick] DIR\n\n"+
			"Builds the Go main package or Rust crate in DIR into a WebAssembly module.\n"+
			"Go: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath.\n"+
			"Rust: cargo build --release --target "+policybuild.RustTarget+" with /usr/bin/cargo (or WINGATE_CARGO).")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	dir := fs.Arg(0)
	if *out == "" {
		*out = authorModule(dir)
	}
	t0 := time.Now()
	lang, err := policybuild.Build(ctx, dir, *out, policybuild.Options{Log: std.Err, Quick: *quick, RustTarget: *target})
	if err != nil {
		return err
	}
	info, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "built %s (%s, %d KiB) in %v\n", *out, lang, (info.Size()+1023)/1024, time.Since(t0).Round(time.Millisecond))
	return nil
}

func runPolicyConformance(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy conformance", std)
	configPath := fs.String("config", "", "file whose bytes are the configuration passed to init")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	failedOnly := fs.Bool("failed", false, "print only the failed checks in the table")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy conformance [--config FILE] [--json] MODULE.wasm\n\n"+
			"Runs the ABI's golden vectors and edge cases against the module, for every ABI\n"+
			"minor version the host accepts, and prints a pass/fail table. Exit 1 on any failure.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	config, err := readConfig(*configPath)
	if err != nil {
		return err
	}
	rep, err := conformance.Run(ctx, wasm, conformance.Options{Name: fs.Arg(0), Config: config})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := rep.WriteJSON(std.Out); err != nil {
			return err
		}
	} else {
		if *failedOnly {
			rep.Checks = rep.Failures()
		}
		rep.WriteTable(std.Out)
	}
	if !rep.OK() {
		return fmt.Errorf("%d of %d checks failed", rep.Failed, rep.Failed+rep.Passed)
	}
	return nil
}

// caseReport is the --json output of policy test.
type caseReport struct {
	Module string       `json:"module"`
	Passed int          `json:"passed"`
	Failed int          `json:"failed"`
	Cases  []caseResult `json:"cases"`
	Build  string       `json:"build,omitempty"`
	Error  string       `json:"error,omitempty"`
}

type caseResult struct {
	File  string          `json:"file"`
	Name  string          `json:"name"`
	Kind  string          `json:"kind"`
	Pass  bool            `json:"pass"`
	Diffs []string        `json:"diffs,omitempty"`
	Error string          `json:"error,omitempty"`
	Got   json.RawMessage `json:"got,omitempty"`
}

func newCaseReport(module string, results []policytest.Result) caseReport {
	rep := caseReport{Module: module, Cases: []caseResult{}}
	for _, r := range results {
		c := caseResult{File: filepath.Base(r.Case.File), Name: r.Case.Name, Kind: r.Kind.String(), Pass: r.Passed(), Diffs: r.Diffs, Got: r.Got}
		if r.Err != nil {
			c.Error = r.Err.Error()
		}
		if c.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Cases = append(rep.Cases, c)
	}
	return rep
}

// reportCases prints the results of policy test, as text or JSON, and
// returns an error when a case failed.
func reportCases(w io.Writer, module string, results []policytest.Result, verbose, asJSON bool) error {
	rep := newCaseReport(module, results)
	if asJSON {
		if err := json.NewEncoder(w).Encode(rep); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if !r.Passed() || verbose {
				fmt.Fprintln(w, r.String())
			}
		}
		if rep.Failed > 0 {
			fmt.Fprintf(w, "FAIL %s: %d of %d cases failed\n", module, rep.Failed, len(results))
		} else {
			fmt.Fprintf(w, "ok   %s: %d cases passed\n", module, len(results))
		}
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d cases failed", rep.Failed, len(results))
	}
	return nil
}

// authorTest is `policy test DIR` on a policy source directory.
type authorTest struct {
	dir        string
	kind       abi.Kind
	configPath string
	deadline   time.Duration
	verbose    bool
	json       bool
	watch      bool
	// poll is the watch loop's polling interval.
	poll time.Duration
}

func (a *authorTest) module() string   { return authorModule(a.dir) }
func (a *authorTest) casesDir() string { return filepath.Join(a.dir, "testdata", "cases") }

func (a *authorTest) config() ([]byte, error) {
	if a.configPath != "" {
		return readConfig(a.configPath)
	}
	b, err := os.ReadFile(filepath.Join(a.dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// once builds the module when stale (quick: for the watch loop) and runs
// the cases; it returns the report and the error to exit with.
func (a *authorTest) once(ctx context.Context, quick bool, buildLog io.Writer) (caseReport, error) {
	module := a.module()
	rep := caseReport{Module: module, Cases: []caseResult{}}
	stale, err := policybuild.Stale(a.dir, module)
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	if stale {
		t0 := time.Now()
		var log strings.Builder
		if _, err := policybuild.Build(ctx, a.dir, module, policybuild.Options{Log: &log, Quick: quick}); err != nil {
			rep.Error = "build: " + firstError(log.String(), err)
			if buildLog != nil {
				io.WriteString(buildLog, log.String())
			}
			return rep, errors.New(rep.Error)
		}
		rep.Build = time.Since(t0).Round(time.Millisecond).String()
	}
	cases, err := policytest.LoadDir(a.casesDir())
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	config, err := a.config()
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	// The watch loop runs the cases on wazero's interpreter: compiling a
	// Go module takes seconds, interpreting a few cases milliseconds. The
	// one-shot test loads the module the way the host does.
	var d policytest.Decider
	if quick {
		wasm, err := os.ReadFile(module)
		if err != nil {
			rep.Error = err.Error()
			return rep, err
		}
		m, err := conformance.NewInterpreted(ctx, wasm, config)
		if err != nil {
			rep.Error = err.Error()
			return rep, err
		}
		defer m.Close(context.Background())
		d = m
	} else {
		p, err := loadOfflinePolicy(ctx, module, config, a.deadline, io.Discard)
		if err != nil {
			rep.Error = err.Error()
			return rep, err
		}
		defer p.Close()
		d = p.v
	}
	build := rep.Build
	rep = newCaseReport(module, policytest.RunAll(ctx, d, a.kind, cases))
	rep.Build = build
	if rep.Failed > 0 {
		return rep, fmt.Errorf("%d of %d cases failed", rep.Failed, len(cases))
	}
	return rep, nil
}

// firstError picks the compiler's first error line, for a one-line
// verdict.
func firstError(log string, err error) string {
	for _, line := range strings.Split(log, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "error") || strings.Contains(t, ".go:") {
			return t
		}
	}
	return err.Error()
}

// verdict is the one-line summary of a run.
func verdict(rep caseReport, err error) string {
	build := ""
	if rep.Build != "" {
		build = " (built in " + rep.Build + ")"
	}
	switch {
	case rep.Error != "":
		return fmt.Sprintf("FAIL %s: %s", rep.Module, rep.Error)
	case err != nil:
		var first string
		for _, c := range rep.Cases {
			if !c.Pass {
				first = c.Name
				if len(c.Diffs) > 0 {
					first += ": " + c.Diffs[0]
				} else if c.Error != "" {
					first += ": " + c.Error
				}
				break
			}
		}
		return fmt.Sprintf("FAIL %s: %d of %d cases failed%s; first: %s", rep.Module, rep.Failed, rep.Failed+rep.Passed, build, first)
	}
	return fmt.Sprintf("ok   %s: %d cases passed%s", rep.Module, rep.Passed, build)
}

func (a *authorTest) run(ctx context.Context, std Stdio) error {
	if !a.watch {
		rep, err := a.once(ctx, false, std.Err)
		if a.json {
			if jerr := json.NewEncoder(std.Out).Encode(rep); jerr != nil {
				return jerr
			}
			return err
		}
		for _, c := range rep.Cases {
			if !c.Pass || a.verbose {
				fmt.Fprintf(std.Out, "%s %s: %s %s %s\n", map[bool]string{true: "PASS", false: "FAIL"}[c.Pass], c.File, c.Name, strings.Join(c.Diffs, "; "), c.Error)
			}
		}
		fmt.Fprintln(std.Out, verdict(rep, err))
		return err
	}
	return a.watchLoop(ctx, std)
}

// fingerprint is what the watch loop compares: the newest modification
// time of the sources, the cases and the configuration, and their count.
func (a *authorTest) fingerprint() string {
	newest, _ := policybuild.Newest(a.dir)
	n := 0
	for _, pat := range []string{filepath.Join(a.casesDir(), "*.json"), filepath.Join(a.dir, "config.json")} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			if info, err := os.Stat(f); err == nil {
				n++
				if info.ModTime().After(newest) {
					newest = info.ModTime()
				}
			}
		}
	}
	return fmt.Sprintf("%d/%d", newest.UnixNano(), n)
}

// watchLoop runs the tests, then again after every change, printing one
// line per run, until ctx ends. It polls modification times (no file
// notification dependency).
func (a *authorTest) watchLoop(ctx context.Context, std Stdio) error {
	poll := a.poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	var mu sync.Mutex // std.Out is written by this goroutine only; mu documents it
	print := func(rep caseReport, err error) {
		mu.Lock()
		defer mu.Unlock()
		if a.json {
			json.NewEncoder(std.Out).Encode(struct {
				Time string `json:"time"`
				OK   bool   `json:"ok"`
				caseReport
			}{time.Now().Format(time.RFC3339Nano), err == nil, rep})
			return
		}
		fmt.Fprintf(std.Out, "%s %s\n", time.Now().Format("15:04:05"), verdict(rep, err))
	}
	seen := ""
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if fp := a.fingerprint(); fp != seen {
			seen = fp
			rep, err := a.once(ctx, true, nil)
			if ctx.Err() != nil {
				return nil
			}
			print(rep, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// evalLinesJSON is evalLines for editors and CI: every non-blank line of
// in gets one JSON object, {"line":N,"decision":{...}} or
// {"line":N,"error":"..."}; a bad line does not stop the rest. It fails
// at the end when a line failed.
func evalLinesJSON(ctx context.Context, d policytest.Decider, kind abi.Kind, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), evaljson.MaxLine)
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	bad := 0
	type line struct {
		Line     int             `json:"line"`
		Decision json.RawMessage `json:"decision,omitempty"`
		Error    string          `json:"error,omitempty"`
	}
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		got, err := policytest.Decide(ctx, d, kind, sc.Bytes())
		l := line{Line: n, Decision: got}
		if err != nil {
			bad++
			l.Decision, l.Error = nil, err.Error()
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("input: a line is longer than %d bytes", evaljson.MaxLine)
		}
		return fmt.Errorf("input: %w", err)
	}
	if bad > 0 {
		return fmt.Errorf("%d line(s) failed", bad)
	}
	return nil
}
