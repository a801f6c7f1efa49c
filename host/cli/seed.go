package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wingman-app/wingate/host/store/pgstore"
	"github.com/wingman-app/wingate/host/store/seed"
)

func init() {
	commands["seed"] = command{summary: "fill the database with generated demo users (COPY)", run: runSeed}
}

// runSeed migrates the database and fills it with --users generated users
// (deterministic for a given --seed). A database that already has users
// is only replaced with --reset.
func runSeed(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("seed", std)
	url := secretFlag(fs, "database-url", "DATABASE_URL", "PostgreSQL URL", os.Getenv)
	users := fs.Int("users", 1000, "how many users to generate")
	seedVal := fs.Uint64("seed", seed.DefaultSeed, "random seed of the generated data")
	reset := fs.Bool("reset", false, "replace existing users and everything hanging off them")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *users < 1 || *users > 10_000_000 {
		return fmt.Errorf("%w: --users must be between 1 and 10000000", errUsage)
	}
	st, err := openDB(ctx, url())
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	rep, err := st.Seed(ctx, pgstore.SeedOptions{Users: *users, Seed: *seedVal, Reset: *reset})
	if err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "seeded %d users, %d locations, %d completions, %d category scores in %v\n",
		rep.Users, rep.Locations, rep.Completions, rep.Reputation, rep.Duration.Round(time.Millisecond))
	return nil
}
