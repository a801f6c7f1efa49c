package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wingman-app/wingate/host/policy"
)

func init() {
	policyCommands["compile"] = command{summary: "validate and compile the policy directory's modules into the compilation cache", run: runPolicyCompile}
}

// runPolicyCompile loads every module of the policies file the way serve
// does (validate, rewrite, compile, start one instance with its
// configuration) so that the compiled code is in the compilation cache
// before a server needs it: run it when an image or a deployment is
// built, and serve starts without compiling.
func runPolicyCompile(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy compile", std)
	dir := fs.String("policy-dir", envOr(os.Getenv, "WINGATE_POLICY_DIR", "./policies"), "policy directory (WINGATE_POLICY_DIR)")
	cacheDir := fs.String("cache-dir", "", `compilation cache; default: the one serve uses ("wingate/wazero" under the user cache directory)`)
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy compile [--policy-dir DIR] [--cache-dir DIR]\n\n"+
			"Validates and compiles each module of DIR/policies.json into the compilation cache.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	raw, err := os.ReadFile(filepath.Join(*dir, policy.PoliciesFileName))
	if err != nil {
		return err
	}
	f, err := policy.ParsePoliciesFile(raw)
	if err != nil {
		return err
	}
	rt, err := policy.NewRuntime(ctx, policy.Options{CacheDir: *cacheDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	var errs []error
	for _, p := range f.Policies {
		wasm, err := os.ReadFile(filepath.Join(*dir, p.File))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s policy %q: %w", p.Kind, p.Name, err))
			continue
		}
		t0 := time.Now()
		v, err := rt.Load(ctx, p.Spec(), wasm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(std.Out, "%-8s %-10s %s  %v\n", p.Kind, p.Name, v.Digest(), time.Since(t0).Round(time.Millisecond))
		v.Close()
		<-v.Done()
	}
	return errors.Join(errs...)
}
