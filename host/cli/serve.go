package cli

import (
	"context"
	"flag"
	"fmt"
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

func runServe(ctx context.Context, args []string, std Stdio) error {
	cfg, err := parseServeFlags(args, std, os.Getenv)
	if err != nil {
		return err
	}
	return app.Run(ctx, cfg, app.Options{})
}

// readDevSecret returns the JWT secret the last serve without one saved.
func readDevSecret() (string, error) { return app.ReadDevSecret() }
