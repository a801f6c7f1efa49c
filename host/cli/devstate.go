package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/wingman-app/wingate/host/app"
)

// Development defaults. A serve given no JWT secret (or, listening on a
// loopback address, no admin token) uses one kept in a directory of its
// own address under the user's cache directory, e.g.
// ~/.cache/wingate/dev/localhost_8080/jwt-secret. The file is made once,
// never rewritten: restarts keep their tokens valid, and two servers that
// differ only in --addr keep two secrets. The client commands (token,
// load, policy ...) read the file of the server they name with --addr.

const (
	devSecretFile = "jwt-secret"
	devAdminFile  = "admin-token"
)

// configuredAddr is the server address the configuration names when no
// flag does: WINGATE_ADDR, else the addr of the file WINGATE_CONFIG
// names, else the default — what serve itself listens on.
func configuredAddr(getenv func(string) string) string {
	if a := getenv("WINGATE_ADDR"); a != "" {
		return a
	}
	if cfg, err := app.Load(getenv(app.ConfigFileEnv), getenv, nil); err == nil && cfg.Addr != "" {
		return cfg.Addr
	}
	return app.Defaults().Addr
}

// serverHostPort returns host:port of server, given as host:port or URL.
func serverHostPort(server string) string {
	if strings.Contains(server, "://") {
		if u, err := url.Parse(server); err == nil {
			return u.Host
		}
	}
	return strings.TrimRight(server, "/")
}

// adminBaseURL is the base URL of a server's admin API (/admin), on its
// operators' listener: ops when named (host:port or URL), else derived
// from the server's address (host:port or URL) as serve derives it
// (app.OpsAddrOf: 127.0.0.1 and the port + 1). Every admin command
// derives it here.
func adminBaseURL(server, ops string) string {
	if ops != "" && ops != app.OpsOff {
		return serverBaseURL(ops)
	}
	cfg := app.Defaults()
	cfg.Addr = serverHostPort(server)
	if addr, on, err := app.OpsAddrOf(cfg); err == nil && on {
		return serverBaseURL(addr)
	}
	return serverBaseURL(server)
}

// serverBaseURL is the base URL of the server given as host:port or URL.
// A listen address on every interface (":8080", "0.0.0.0:8080") is
// reached on loopback.
func serverBaseURL(server string) string {
	if strings.Contains(server, "://") {
		return strings.TrimRight(server, "/")
	}
	host, port, err := net.SplitHostPort(serverHostPort(server))
	if err != nil {
		return "http://" + strings.TrimRight(server, "/")
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// devKey names the development directory of a server address: loopback
// spellings (and the any-address, reached on loopback) are one key, so
// that ":8081", "localhost:8081" and "127.0.0.1:8081" find one secret.
func devKey(server string) (string, error) {
	host, port, err := net.SplitHostPort(serverHostPort(server))
	if err != nil || port == "" {
		return "", fmt.Errorf("server address %q: want host:port", server)
	}
	switch host {
	case "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::":
		host = "localhost"
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
				return r
			}
			return '_'
		}, s)
	}
	return clean(host) + "_" + clean(port), nil
}

// devFile is the path of a development file of server.
func devFile(server, name string) (string, error) {
	key, err := devKey(server)
	if err != nil {
		return "", err
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "wingate", "dev", key, name), nil
}

// errNoDevFile means serve has not made the development file yet.
var errNoDevFile = errors.New("no development file")

// readDevFile returns the content of server's development file name.
func readDevFile(server, name string) (string, string, error) {
	path, err := devFile(server, name)
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", path, fmt.Errorf("%w %s", errNoDevFile, path)
	}
	if err != nil {
		return "", path, err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", path, fmt.Errorf("%s is empty", path)
	}
	return v, path, nil
}

// ensureDevFile returns server's development file name, making it with
// a random value (mode 0600) when absent. An existing file is never
// replaced: it is linked into place only if no other process made it
// first, and then read back.
func ensureDevFile(server, name string) (value, path string, err error) {
	v, path, err := readDevFile(server, name)
	if err == nil || !errors.Is(err, errNoDevFile) {
		return v, path, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", path, err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tmp, err := os.CreateTemp(filepath.Dir(path), name+".*")
	if err != nil {
		return "", path, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(hex.EncodeToString(b) + "\n"); err != nil {
		tmp.Close()
		return "", path, err
	}
	if err := tmp.Close(); err != nil {
		return "", path, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", path, err
	}
	return readDevFile(server, name)
}

// devSecret returns the development JWT secret of server, as `wingate
// token` and `wingate load` read it.
func devSecret(server string) (string, error) {
	s, _, err := readDevFile(server, devSecretFile)
	if errors.Is(err, errNoDevFile) {
		return "", fmt.Errorf("no JWT secret for %s: set WINGATE_JWT_SECRET (or --jwt-secret), or start `wingate serve --addr %s` without one once (it keeps a secret in %v)",
			server, server, strings.TrimPrefix(err.Error(), errNoDevFile.Error()+" "))
	}
	return s, err
}

// isLoopbackAddr reports whether a listen address accepts connections
// from this machine only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secretFlag adds a flag whose default comes from the environment
// variable env without showing it: help prints whether it is set, never
// its value. The returned function gives the flag if given, else env.
func secretFlag(fs *flag.FlagSet, name, env, usage string, getenv func(string) string) func() string {
	state := "unset"
	if getenv(env) != "" {
		state = "set, hidden"
	}
	v := fs.String(name, "", fmt.Sprintf("%s (default %s: %s)", usage, env, state))
	return func() string {
		if *v != "" {
			return *v
		}
		return getenv(env)
	}
}
