package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/loadgen"
)

func init() {
	commands["load"] = command{summary: "load-test a server on this machine (loopback only)", run: runLoad}
}

// errTargetsMissed makes `wingate load` exit 1 after printing its report.
var errTargetsMissed = errors.New("targets missed")

func runLoad(ctx context.Context, args []string, std Stdio) error {
	var cfg loadgen.Config
	fs := newFlagSet("load", std)
	fs.StringVar(&cfg.Target, "url", serverBaseURL(configuredAddr(os.Getenv)), "server base URL, or one endpoint's URL (e.g. http://127.0.0.1:8080/api/challenges) to drive only it; loopback addresses only")
	asUser := fs.Int64("user", 0, "one-endpoint mode: send a bearer token for this user id")
	mode := fs.String("mode", "closed", "closed (each connection sends when answered) or rate (constant request rate)")
	fs.IntVar(&cfg.Connections, "connections", 100, fmt.Sprintf("concurrent connections (1 to %d)", loadgen.MaxConnections))
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second, for --mode rate")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, fmt.Sprintf("measured duration (at most %v)", loadgen.MaxDuration))
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "unmeasured warm-up before the run")
	fs.BoolVar(&cfg.NewChats, "new-chats", false, "open a new chat session per chatting user instead of continuing their newest (returning users continue theirs)")
	fs.IntVar(&cfg.Requests, "requests", 0, "stop after this many requests (0: duration only)")
	fs.IntVar(&cfg.Users, "users", 2000, "seeded users to draw from (ids 1..N)")
	fs.Float64Var(&cfg.ZipfS, "zipf", 1.1, "Zipf exponent of user and challenge popularity (> 1)")
	mix := fs.String("mix", "", "endpoint weights, e.g. challenges=30,reputation=20,chat=5 (default: the built-in app mix)")
	seedV := fs.Uint64("seed", 1, "seed of the request sequence")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	secret := secretFlag(fs, "jwt-secret", "WINGATE_JWT_SECRET", "the server's HS256 key, to mint user tokens; empty: the development secret of the --url's server", os.Getenv)
	jsonOut := fs.String("json", "", "also write the report as JSON to this file (- for stdout, instead of the text report)")
	targets := fs.String("targets", "", "JSON targets file, or \"default\" for the project's targets; exit 1 when any is missed")
	fs.StringVar(&cfg.Ops, "ops-url", "", "the server's operators' base URL, where --gauges reads /metrics; empty: --url's host with its port + 1")
	maxErr := fs.Float64("max-error-rate", 0.01, "exit 1 when more than this share of requests fail (a targets file's max_error_ratio wins unless this flag is given)")
	progress := fs.Bool("progress", isTerminal(std.Out), "print a live line (rate, errors, p50/p99) every second; default: when standard output is a terminal")
	gauges := fs.String("gauges", "", "comma-separated server metrics to sample from /metrics during the run (the targets file's gauges are added)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	if *maxErr < 0 || *maxErr > 1 {
		return fmt.Errorf("%w: --max-error-rate must be between 0 and 1", errUsage)
	}
	maxErrGiven := false
	fs.Visit(func(f *flag.Flag) { maxErrGiven = maxErrGiven || f.Name == "max-error-rate" })
	key := secret()
	if key == "" {
		key, _ = devSecret(serverHostPort(cfg.Target)) // absent: only public endpoints can run
	}
	if *progress {
		cfg.Progress = func(p loadgen.Progress) { fmt.Fprint(std.Out, "\r\033[K"+progressLine(p)) }
	}
	if oneURL(cfg.Target) {
		return runLoadURL(ctx, cfg, *mode, *asUser, key, *jsonOut, *maxErr, std)
	}
	cfg.Mode = loadgen.Mode(*mode)
	cfg.Seed = *seedV
	if *mix != "" {
		m, err := loadgen.ParseMix(*mix)
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		cfg.Mix = m
	}
	var tgt loadgen.Targets
	if *targets != "" {
		t, err := loadgen.LoadTargets(*targets)
		if err != nil {
			return err
		}
		tgt = t
		cfg.Gauges = append(cfg.Gauges, t.GaugeNames()...)
	}
	if tgt.MaxErrorRatio == nil || maxErrGiven {
		tgt.MaxErrorRatio = maxErr
	}
	for _, g := range strings.Split(*gauges, ",") {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(cfg.Gauges, g) {
			cfg.Gauges = append(cfg.Gauges, g)
		}
	}
	if key != "" {
		a, err := auth.New([]byte(key))
		if err != nil {
			return fmt.Errorf("jwt secret: %w", err)
		}
		cfg.Tokens = func(user int64) (string, error) { return a.Issue(user, loadTokenTTL) }
	}
	rep, err := loadgen.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(std.Out, "\r\033[K")
	}
	if err != nil {
		return err
	}
	pass := rep.Evaluate(tgt)
	if err := writeReport(std, *jsonOut, rep, rep.WriteText); err != nil {
		return err
	}
	if !pass {
		return errTargetsMissed
	}
	return nil
}

// oneURL reports whether target names one endpoint (a path beyond "/").
func oneURL(target string) bool {
	u, err := url.Parse(target)
	return err == nil && u.Path != "" && u.Path != "/"
}

// runLoadURL drives one endpoint (loadgen.RunURL): every request the same,
// pre-built, one keep-alive connection per worker; --mode rate sends at
// --rate per second with latency from the intended send time.
func runLoadURL(ctx context.Context, cfg loadgen.Config, mode string, user int64, secret, jsonOut string, maxErr float64, std Stdio) error {
	uc := loadgen.URLConfig{URL: cfg.Target, Connections: cfg.Connections, Duration: cfg.Duration, Warmup: cfg.Warmup,
		Timeout: cfg.Timeout}
	switch loadgen.Mode(mode) {
	case loadgen.ModeRate:
		if cfg.Rate <= 0 {
			return fmt.Errorf("%w: --mode rate needs a positive --rate", errUsage)
		}
		uc.Rate = cfg.Rate
	case loadgen.ModeClosed:
	default:
		return fmt.Errorf("%w: --mode %q: want closed or rate", errUsage, mode)
	}
	if user != 0 {
		if user < 0 {
			return fmt.Errorf("%w: --user must be positive", errUsage)
		}
		a, err := auth.New([]byte(secret))
		if err != nil {
			return fmt.Errorf("jwt secret: %w", err)
		}
		tok, err := a.Issue(user, loadTokenTTL)
		if err != nil {
			return err
		}
		uc.Header = map[string]string{"Authorization": "Bearer " + tok}
	}
	rep, err := loadgen.RunURL(ctx, uc)
	if err != nil {
		return err
	}
	if err := writeReport(std, jsonOut, rep, rep.WriteText); err != nil {
		return err
	}
	if r := rep.ErrorRatio(); r > maxErr {
		return fmt.Errorf("%w: %.2f%% of requests failed (--max-error-rate %.2f%%)", errTargetsMissed, 100*r, 100*maxErr)
	}
	return nil
}

// writeReport writes a report as text, as JSON to stdout (jsonOut "-",
// instead of the text) or as text and JSON to the file jsonOut.
func writeReport(std Stdio, jsonOut string, rep any, text func(io.Writer) error) error {
	if jsonOut != "-" {
		if err := text(std.Out); err != nil {
			return err
		}
	}
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if jsonOut == "-" {
		_, err = std.Out.Write(b)
	} else {
		err = os.WriteFile(jsonOut, b, 0o644)
	}
	if err != nil {
		return fmt.Errorf("json report: %w", err)
	}
	return nil
}

// progressLine is the live line of `wingate load`.
func progressLine(p loadgen.Progress) string {
	return fmt.Sprintf("%s %5.1fs  %d requests  %.0f req/s  errors %d (%.2f%%)  p50 %.2f ms  p99 %.2f ms",
		p.Phase, p.Elapsed.Seconds(), p.Requests, p.Rate, p.Errors, 100*p.ErrorRatio(),
		float64(p.P50)/1e6, float64(p.P99)/1e6)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// loadTokenTTL is the lifetime of the tokens the load tool mints: the
// longest run (loadgen.MaxDuration and a warm-up) and no more, well
// within the server's default maximum lifetime (24 h).
const loadTokenTTL = 2 * time.Hour
