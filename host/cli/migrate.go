package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wingman-app/wingate/host/store/pgstore"
)

func init() {
	commands["migrate"] = command{summary: "apply the database schema migrations", run: runMigrate}
}

// openDB opens the PostgreSQL store for the one-shot commands.
func openDB(ctx context.Context, url string) (*pgstore.Store, error) {
	if url == "" {
		return nil, fmt.Errorf("%w: DATABASE_URL (or --database-url) is required", errUsage)
	}
	return pgstore.Open(ctx, pgstore.Config{URL: url, MaxConns: 4, MinConns: 1, OpTimeout: 30 * time.Second})
}

func runMigrate(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("migrate", std)
	url := secretFlag(fs, "database-url", "DATABASE_URL", "PostgreSQL URL", os.Getenv)
	status := fs.Bool("status", false, "list migrations and whether they are applied, change nothing")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	st, err := openDB(ctx, url())
	if err != nil {
		return err
	}
	defer st.Close()
	if *status {
		ms, err := st.MigrationStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Fprintf(std.Out, "%04d %-24s %s\n", m.Version, m.Name, state)
		}
		return nil
	}
	applied, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(std.Out, "schema up to date")
		return nil
	}
	fmt.Fprintf(std.Out, "applied migrations %v\n", applied)
	return nil
}
