package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAdminURL is the server tests create their databases on:
// WINGATE_TEST_DATABASE_URL, or the local trust-auth PostgreSQL.
func TestAdminURL() string {
	if u := os.Getenv("WINGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// CreateTestDatabase creates an empty database named prefix_<random> on
// TestAdminURL and returns its URL and a function that drops it (closing
// whatever is still connected). It is for tests, which must not share
// databases.
func CreateTestDatabase(ctx context.Context, prefix string) (dbURL string, drop func() error, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, TestAdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("pgstore: connect to PostgreSQL at %s: %w", TestAdminURL(), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("pgstore: create database %s: %w", name, err)
	}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, TestAdminURL())
		if err != nil {
			return fmt.Errorf("pgstore: drop database %s: %w", name, err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("pgstore: drop database %s: %w", name, err)
		}
		return nil
	}
	u, err := url.Parse(TestAdminURL())
	if err != nil {
		_ = drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// TerminateBackends ends every server process connected to the database
// of dbURL (pg_terminate_backend), as an operator or a crash would, and
// returns how many it ended. It is for fault tests.
func TerminateBackends(ctx context.Context, dbURL string) (int, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return 0, err
	}
	name := u.Path[1:]
	admin, err := pgx.Connect(ctx, TestAdminURL())
	if err != nil {
		return 0, err
	}
	defer admin.Close(ctx)
	var n int
	err = admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n)
	return n, err
}
