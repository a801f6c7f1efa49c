package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	addr := envOr(os.Getenv, "WINGATE_ADDR", "127.0.0.1:8080")
	fs.StringVar(&cfg.Target, "url", "http://"+addr, "server base URL, or one endpoint's URL (e.g. http://127.0.0.1:8080/api/challenges) to drive only it; loopback addresses only")
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
	secret := fs.String("jwt-secret", os.Getenv("WINGATE_JWT_SECRET"), "the server's HS256 key, to mint user tokens (WINGATE_JWT_SECRET); empty: the secret a local serve saved")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file (- for stdout, instead of the text report)")
	targets := fs.String("targets", "", "JSON targets file, or \"default\" for the project's targets; exit 1 when any is missed")
	fs.StringVar(&cfg.Ops, "ops-url", "", "the server's operators' base URL, where --gauges reads /metrics; empty: --url's host with its port + 1")
	gauges := fs.String("gauges", "", "comma-separated server metrics to sample from /metrics during the run (the targets file's gauges are added)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	if oneURL(cfg.Target) {
		return runLoadURL(ctx, cfg, *mode, *asUser, *secret, *jsonOut, std)
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
	var tgt *loadgen.Targets
	if *targets != "" {
		t, err := loadgen.LoadTargets(*targets)
		if err != nil {
			return err
		}
		tgt = &t
		cfg.Gauges = append(cfg.Gauges, t.GaugeNames()...)
	}
	for _, g := range strings.Split(*gauges, ",") {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(cfg.Gauges, g) {
			cfg.Gauges = append(cfg.Gauges, g)
		}
	}
	key := *secret
	if key == "" {
		key, _ = readDevSecret() // absent: only public endpoints can run
	}
	if key != "" {
		a, err := auth.New([]byte(key))
		if err != nil {
			return fmt.Errorf("jwt secret: %w", err)
		}
		cfg.Tokens = func(user int64) (string, error) { return a.Issue(user, loadTokenTTL) }
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	pass := true
	if tgt != nil {
		pass = rep.Evaluate(*tgt)
	}
	if *jsonOut != "-" {
		if err := rep.WriteText(std.Out); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if *jsonOut == "-" {
			_, err = std.Out.Write(b)
		} else {
			err = os.WriteFile(*jsonOut, b, 0o644)
		}
		if err != nil {
			return fmt.Errorf("json report: %w", err)
		}
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
func runLoadURL(ctx context.Context, cfg loadgen.Config, mode string, user int64, secret, jsonOut string, std Stdio) error {
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
		if secret == "" {
			secret, _ = readDevSecret()
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
	if jsonOut == "" {
		return rep.WriteText(std.Out)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if jsonOut == "-" {
		_, err = std.Out.Write(b)
		return err
	}
	if err := rep.WriteText(std.Out); err != nil {
		return err
	}
	return os.WriteFile(jsonOut, b, 0o644)
}

// loadTokenTTL is the lifetime of the tokens the load tool mints: the
// longest run (loadgen.MaxDuration and a warm-up) and no more, well
// within the server's default maximum lifetime (24 h).
const loadTokenTTL = 2 * time.Hour
