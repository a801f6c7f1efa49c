package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/wingman-app/wingate/host/app"
)

func init() {
	commands["serve"] = command{summary: "run the API host", run: runServe}
}

// parseServeFlags reads serve's configuration: app.Load's defaults, the
// file named by --config (or WINGATE_CONFIG), the environment, then the
// flags given. Each setting of app.Settings that has a flag is one here,
// its default shown as the environment (or the built-in default) sets it.
func parseServeFlags(args []string, std Stdio, getenv func(string) string) (app.Config, error) {
	fs := newFlagSet("serve", std)
	shown, err := app.Load("", getenv, nil)
	if err != nil {
		shown = app.Defaults() // the error is reported after parsing
	}
	for _, s := range app.Settings() {
		if s.Flag == "" {
			continue
		}
		usage := fmt.Sprintf("%s (%s)", s.Usage, s.Env)
		if hiddenSettings[s.Key] {
			// Parsing takes only the flags given (Visit below), so the
			// default shown need not be the value: say whether it is set.
			state := "unset"
			if getenv(s.Env) != "" {
				state = "set, hidden"
			}
			fs.String(s.Flag, "", fmt.Sprintf("%s (default %s: %s)", s.Usage, s.Env, state))
			continue
		}
		switch v := app.Value(shown, s.Key).(type) {
		case int64:
			fs.Int64(s.Flag, v, usage)
		case string:
			fs.String(s.Flag, v, usage)
		case time.Duration:
			fs.Duration(s.Flag, v, usage)
		default:
			panic(fmt.Sprintf("serve: flag --%s of type %T", s.Flag, v))
		}
	}
	file := fs.String("config", getenv(app.ConfigFileEnv), "JSON configuration file; flags and the environment override it ("+app.ConfigFileEnv+")")
	if err := fs.Parse(args); err != nil {
		return app.Config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		return app.Config{}, fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		if key, ok := app.KeyOfFlag(f.Name); ok {
			set[key] = f.Value.String()
		}
	})
	return app.Load(*file, getenv, set)
}

// hiddenSettings are the settings whose values serve's help never shows:
// secrets, and URLs that may carry a password or a token.
var hiddenSettings = map[string]bool{
	"admin_token": true, "jwt_secret": true, "database_url": true, "redis_url": true, "alert_webhook": true,
}

func runServe(ctx context.Context, args []string, std Stdio) error {
	cfg, err := parseServeFlags(args, std, os.Getenv)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(std.Err, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := devDefaults(&cfg, log); err != nil {
		return err
	}
	return app.Run(ctx, cfg, app.Options{Logger: log})
}

// devDefaults fills what a development serve leaves unset: the JWT
// secret and, on a loopback address, the admin token, each kept in the
// address's development directory (devstate.go). It logs where they
// are, never what they are.
func devDefaults(cfg *app.Config, log *slog.Logger) error {
	if cfg.JWTSecret == "" {
		s, path, err := ensureDevFile(cfg.Addr, devSecretFile)
		if err != nil {
			return fmt.Errorf("development JWT secret (set WINGATE_JWT_SECRET instead): %w", err)
		}
		cfg.JWTSecret = s
		log.Info("auth: WINGATE_JWT_SECRET unset, using this address's development secret; `wingate token --addr "+cfg.Addr+" --user ID` signs with it",
			"secret_file", path)
	}
	if cfg.AdminToken == "" {
		if !isLoopbackAddr(cfg.Addr) {
			log.Info("admin: WINGATE_ADMIN_TOKEN unset and the address is not loopback: the admin API is disabled")
			return nil
		}
		tok, path, err := ensureDevFile(cfg.Addr, devAdminFile)
		if err != nil {
			return fmt.Errorf("development admin token (set WINGATE_ADMIN_TOKEN instead): %w", err)
		}
		cfg.AdminToken = tok
		log.Info("admin: WINGATE_ADMIN_TOKEN unset, the admin API (loopback only) takes this address's development token; the policy commands read it with --addr "+cfg.Addr,
			"token_file", path)
	}
	return nil
}
