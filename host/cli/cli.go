// Package cli implements the wingate command's subcommands. Each
// subcommand lives in its own file and registers itself in commands.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/wingman-app/wingate/host/app"
)

// Stdio carries the standard streams, so tests run commands in process.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, args []string, io Stdio) error
}

// commands maps a subcommand name to its implementation. It is filled by
// the init functions of this package's files and never changed afterwards.
var commands = map[string]command{}

// errUsage marks an error caused by bad arguments (exit code 2); it is
// app.ErrUsage, so that configuration errors of serve exit 2 too.
var errUsage = app.ErrUsage

// Run runs the subcommand named by args[0] and returns the process exit
// code: 0 on success, 2 on a usage error, 1 otherwise.
func Run(ctx context.Context, args []string, std Stdio) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(std.Err)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(std.Err, "wingate: unknown command %q\n\n", args[0])
		usage(std.Err)
		return 2
	}
	if err := cmd.run(ctx, args[1:], std); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(std.Err, "wingate %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wingate <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, std Stdio) *flag.FlagSet {
	fs := flag.NewFlagSet("wingate "+name, flag.ContinueOnError)
	fs.SetOutput(std.Err)
	return fs
}

// parseFlags parses args into fs; unless nargs is negative, exactly nargs
// positional arguments must remain (otherwise fs's usage is printed).
// Failures wrap errUsage.
func parseFlags(fs *flag.FlagSet, args []string, nargs int) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if nargs >= 0 && fs.NArg() != nargs {
		fs.Usage()
		return fmt.Errorf("%w: want %d argument(s), got %q", errUsage, nargs, fs.Args())
	}
	return nil
}

// envOr returns the environment value of key, or def when unset.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
