package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func init() {
	commands["health"] = command{summary: "exit 0 when a server answers its /readyz (or /healthz) with 200: a container's health check", run: runHealth}
}

// healthPaths are the paths health may check.
var healthPaths = map[string]bool{"/readyz": true, "/healthz": true}

// maxHealthTimeout bounds --timeout.
const maxHealthTimeout = time.Minute

// runHealth GETs --path of the server --addr names (a listen address on
// every interface is reached on loopback) and succeeds on 200 alone. It
// exists for images without a shell or an HTTP client, such as the
// distroless one of the Dockerfile: `/wingate health` is their health
// check command.
func runHealth(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("health", std)
	addr := fs.String("addr", configuredAddr(os.Getenv), "the server's address, host:port or URL (WINGATE_ADDR, or the config file's addr)")
	path := fs.String("path", "/readyz", "what to check: /readyz (ready to serve) or /healthz (alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "bound on the whole check, at most 1m")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if !healthPaths[*path] {
		return fmt.Errorf("%w: --path %q: want /readyz or /healthz", errUsage, *path)
	}
	if *timeout <= 0 || *timeout > maxHealthTimeout {
		return fmt.Errorf("%w: --timeout %s: want more than 0 and at most %s", errUsage, *timeout, maxHealthTimeout)
	}
	url := serverBaseURL(*addr) + *path
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: --addr %q: %v", errUsage, *addr, err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	// The answer's body is not needed; read a little so that the
	// connection closes cleanly, never more.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	fmt.Fprintf(std.Out, "%s: %s\n", url, resp.Status)
	return nil
}
