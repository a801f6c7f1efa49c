package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wingman-app/wingate/host/auth"
)

func init() {
	commands["token"] = command{summary: "print a bearer token for a user (development)", run: runToken}
}

// runToken prints an HS256 token for --user. The secret comes from
// --jwt-secret, WINGATE_JWT_SECRET, or the development secret of the
// server --addr names (devstate.go).
func runToken(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("token", std)
	user := fs.Int64("user", 0, "user id (required)")
	ttl := fs.Duration("ttl", auth.DefaultTTL, "token lifetime")
	secret := secretFlag(fs, "jwt-secret", "WINGATE_JWT_SECRET", "HS256 key; empty: the development secret of the server --addr names", os.Getenv)
	addr := fs.String("addr", configuredAddr(os.Getenv), "address of the server the token is for, as given to its serve (WINGATE_ADDR, or the config file's addr)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *user <= 0 {
		return fmt.Errorf("%w: --user must be a positive user id", errUsage)
	}
	if *ttl <= 0 || *ttl > 365*24*time.Hour {
		return fmt.Errorf("%w: --ttl must be positive and at most a year", errUsage)
	}
	key := secret()
	if key == "" {
		var err error
		if key, err = devSecret(*addr); err != nil {
			return err
		}
	}
	a, err := auth.New([]byte(key))
	if err != nil {
		return err
	}
	tok, err := a.Issue(*user, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(std.Out, tok)
	return nil
}
