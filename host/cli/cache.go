package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

func init() {
	commands["cache"] = command{summary: "purge a running host's response cache by tag or key (admin API)", run: runCache}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runCache(ctx context.Context, args []string, std Stdio) error {
	if len(args) == 0 || args[0] != "purge" {
		fmt.Fprintln(std.Err, "usage: wingate cache purge [--tag TAG]... [--key URL]... [--addr ADDR] [--token TOKEN] [--json]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return fmt.Errorf("%w: want the subcommand purge", errUsage)
	}
	return runCachePurge(ctx, args[1:], std)
}

// purgeAnswer is the admin API's answer to a purge.
type purgeAnswer struct {
	Tags         []string `json:"tags"`
	Keys         []string `json:"keys"`
	Redis        bool     `json:"redis"`
	RedisEntries int64    `json:"redis_entries"`
	Instances    int64    `json:"instances"`
	Pending      bool     `json:"pending"`
}

func runCachePurge(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("cache purge", std)
	client := adminFlags(fs)
	var tags, keys stringList
	fs.Var(&tags, "tag", "purge every entry carrying this tag (repeatable), e.g. challenges or user:7")
	fs.Var(&keys, "key", "purge every entry of this URL, for every caller (repeatable), e.g. /api/challenges?limit=5")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if len(tags)+len(keys) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: name at least one --tag or --key", errUsage)
	}
	body, err := json.Marshal(map[string][]string{"tags": nonNil(tags), "keys": nonNil(keys)})
	if err != nil {
		return err
	}
	var out purgeAnswer
	var raw json.RawMessage
	dst := any(&out)
	if *asJSON {
		dst = &raw
	}
	if err := client().do(ctx, http.MethodPost, "/admin/cache/purge", "application/json", bytes.NewReader(body), dst); err != nil {
		return err
	}
	if *asJSON {
		fmt.Fprintln(std.Out, string(raw))
		return nil
	}
	var what []string
	for _, t := range out.Tags {
		what = append(what, "tag "+t)
	}
	for _, k := range out.Keys {
		what = append(what, "key "+k)
	}
	fmt.Fprintf(std.Out, "purged %s\n", strings.Join(what, ", "))
	switch {
	case out.Redis:
		fmt.Fprintf(std.Out, "redis: %d entries dropped, %d instances notified\n", out.RedisEntries, out.Instances)
	case out.Pending:
		fmt.Fprintln(std.Out, "redis: unavailable; purged on this instance, sent to Redis and the other instances when it is back")
	default:
		fmt.Fprintln(std.Out, "in-process cache only (no Redis): purged on this instance")
	}
	return nil
}

func nonNil(l stringList) []string {
	if l == nil {
		return []string{}
	}
	return l
}
