package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
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
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	rt, err := policy.NewRuntime(ctx, policy.Options{CacheDir: *cacheDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	// Loaded as serve loads them, into an engine of this command's own.
	t0 := time.Now()
	versions, err := policy.LoadDir(ctx, rt, policy.NewEngine(policy.EngineOptions{}), *dir)
	for _, v := range versions {
		fmt.Fprintf(std.Out, "%-8s %-10s %s\n", kindNames(v), v.Name(), v.Digest())
		v.Close()
		<-v.Done()
	}
	fmt.Fprintf(std.Out, "%d compiled in %v\n", len(versions), time.Since(t0).Round(time.Millisecond))
	return err
}

// kindNames lists the kinds a version handles.
func kindNames(v *policy.Version) string {
	var names []string
	for _, k := range v.Kinds() {
		names = append(names, k.String())
	}
	return strings.Join(names, ",")
}
