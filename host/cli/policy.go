package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// policyCommands are the subcommands of `wingate policy`. Each file that
// adds one registers it here from its init function, like commands.
var policyCommands = map[string]command{}

func init() {
	commands["policy"] = command{summary: "evaluate, test and manage policies (wingate policy help)", run: runPolicy}
	policyCommands["eval"] = command{summary: "decide JSON Lines from stdin with one policy module", run: runPolicyEval}
	policyCommands["test"] = command{summary: "run case files against a policy module", run: runPolicyTest}
}

func runPolicy(ctx context.Context, args []string, std Stdio) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		policyUsage(std.Err)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing subcommand", errUsage)
		}
		return nil
	}
	sub, ok := policyCommands[args[0]]
	if !ok {
		policyUsage(std.Err)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, args[0])
	}
	if err := sub.run(ctx, args[1:], std); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

func policyUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: wingate policy <subcommand> [flags]\n\nsubcommands:")
	names := make([]string, 0, len(policyCommands))
	for n := range policyCommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, policyCommands[n].summary)
	}
}

// offlineDeadline is the per-call deadline of the author tools: generous,
// because they answer "what does the policy decide", not "how fast";
// benchmarks and the host's policies file answer the latter.
const offlineDeadline = time.Second

// offlinePolicy is one policy module loaded outside any Engine, called
// directly so that its failures show instead of fallback decisions.
type offlinePolicy struct {
	rt *policy.Runtime
	v  *policy.Version
}

// Close drains and closes the version, then the runtime.
func (p *offlinePolicy) Close() {
	p.v.Close()
	<-p.v.Done()
	p.rt.Close(context.Background())
}

// loadOfflinePolicy loads the module at path with the configuration bytes
// config. Guest logs go to errw.
func loadOfflinePolicy(ctx context.Context, path string, config []byte, deadline time.Duration, errw io.Writer) (*offlinePolicy, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	v, err := rt.Load(ctx, policy.Spec{Name: name, Config: config, Deadline: deadline, MinInstances: 1, MaxInstances: 1}, wasm)
	if err != nil {
		rt.Close(context.Background())
		return nil, err
	}
	return &offlinePolicy{rt: rt, v: v}, nil
}

func readConfig(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

func parseKindFlag(s string) (abi.Kind, error) {
	k, ok := abi.ParseKind(s)
	if !ok {
		return 0, fmt.Errorf("%w: --kind %q: want cache, route or compress", errUsage, s)
	}
	return k, nil
}

func runPolicyEval(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy eval", std)
	kindName := fs.String("kind", "", "decision kind: cache, route or compress (required)")
	path := fs.String("policy", "", "policy module (.wasm) (required)")
	configPath := fs.String("config", "", "file whose bytes are the policy's configuration")
	deadline := fs.Duration("deadline", offlineDeadline, "per-decision deadline")
	asJSON := fs.Bool("json", false, `one JSON object per line, {"line":N,"decision":...} or {"line":N,"error":"..."}, continuing past bad lines`)
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy eval --kind KIND --policy FILE.wasm [--config FILE] < requests.jsonl\n\n"+
			"Reads one request per line (the eval JSON of docs/design.md) and writes one decision per line, in order.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *kindName == "" || *path == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --kind and --policy are required, and no arguments", errUsage)
	}
	kind, err := parseKindFlag(*kindName)
	if err != nil {
		return err
	}
	config, err := readConfig(*configPath)
	if err != nil {
		return err
	}
	p, err := loadOfflinePolicy(ctx, *path, config, *deadline, std.Err)
	if err != nil {
		return err
	}
	defer p.Close()
	if !p.v.Handles(kind) {
		return fmt.Errorf("%s handles %v, not %v", *path, p.v.Kinds(), kind)
	}
	if *asJSON {
		return evalLinesJSON(ctx, p.v, kind, std.In, std.Out)
	}
	return evalLines(ctx, p.v, kind, std.In, std.Out)
}

// evalLines decides every non-blank line of in and writes one decision per
// line to out. It stops at the first bad line, naming it.
func evalLines(ctx context.Context, d policytest.Decider, kind abi.Kind, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), evaljson.MaxLine)
	w := bufio.NewWriter(out)
	defer w.Flush()
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		got, err := policytest.Decide(ctx, d, kind, line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		w.Write(got)
		w.WriteByte('\n')
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
	return nil
}

func runPolicyTest(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy test", std)
	path := fs.String("policy", "", "policy module (.wasm); default: the one serving the kind in --policy-dir")
	kindName := fs.String("kind", "", "decision kind of every case; default: inferred from each input")
	configPath := fs.String("config", "", "file whose bytes are the policy's configuration; default: the policies file's, with --policy-dir")
	dir := fs.String("policy-dir", envOr(os.Getenv, "WINGATE_POLICY_DIR", "./policies"), "policy directory used when --policy is not given (WINGATE_POLICY_DIR)")
	deadline := fs.Duration("deadline", offlineDeadline, "per-decision deadline")
	verbose := fs.Bool("v", false, "print passing cases too")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	watch := fs.Bool("watch", false, "with a policy source DIR: rebuild and retest on every change, one line per run")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy test [--policy FILE.wasm] [--kind KIND] [--config FILE] [--json] DIR\n"+
			"       wingate policy test [--watch] [--json] POLICY_SOURCE_DIR\n\n"+
			"Runs the case files DIR/*.json (see package policytest) and prints a diff for each failure.\n"+
			"Given a Go or Rust policy source directory, builds DIR/<name>.wasm when stale and runs\n"+
			"DIR/testdata/cases with DIR/config.json.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	var kind abi.Kind
	if *kindName != "" {
		k, err := parseKindFlag(*kindName)
		if err != nil {
			return err
		}
		kind = k
	}
	if *path == "" && isPolicySource(fs.Arg(0)) {
		a := &authorTest{dir: fs.Arg(0), kind: kind, configPath: *configPath, deadline: *deadline, verbose: *verbose, json: *asJSON, watch: *watch}
		return a.run(ctx, std)
	}
	if *watch {
		return fmt.Errorf("%w: --watch needs a policy source directory (a Go main package or a Rust crate), not %s", errUsage, fs.Arg(0))
	}
	cases, err := policytest.LoadDir(fs.Arg(0))
	if err != nil {
		return err
	}
	config, err := readConfig(*configPath)
	if err != nil {
		return err
	}
	if *path == "" {
		k := kind
		if k == 0 {
			if k, err = policytest.InferKind(cases[0].Input); err != nil {
				return fmt.Errorf("%w; or give --policy", err)
			}
		}
		file, cfg, err := policyOfKind(*dir, k)
		if err != nil {
			return err
		}
		*path = file
		if *configPath == "" {
			config = cfg
		}
	}
	p, err := loadOfflinePolicy(ctx, *path, config, *deadline, std.Err)
	if err != nil {
		return err
	}
	defer p.Close()
	return reportCases(std.Out, *path, policytest.RunAll(ctx, p.v, kind, cases), *verbose, *asJSON)
}

// policyOfKind finds the module and configuration serving kind in dir:
// its policies file's entry, or else dir/<kind>.wasm with no configuration.
func policyOfKind(dir string, kind abi.Kind) (file string, config []byte, err error) {
	b, err := os.ReadFile(filepath.Join(dir, policy.PoliciesFileName))
	if err == nil {
		f, err := policy.ParsePoliciesFile(b)
		if err != nil {
			return "", nil, err
		}
		for _, e := range f.Policies {
			if e.Kind == kind.String() {
				return filepath.Join(dir, e.File), []byte(e.Config), nil
			}
		}
	}
	file = filepath.Join(dir, kind.String()+".wasm")
	if _, err := os.Stat(file); err != nil {
		return "", nil, fmt.Errorf("no policy for kind %v in %s (build them with go generate ./policies, or give --policy): %w", kind, dir, err)
	}
	return file, nil, nil
}
