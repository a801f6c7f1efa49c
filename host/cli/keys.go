package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

func init() {
	commands["keys"] = command{summary: "issue, list, limit, rotate and revoke the gateway's virtual keys, and read their spend (admin API)", run: runKeys}
}

const keysUsage = `usage: wingate keys <subcommand> [flags]

  create  --name NAME [--model M]... [--rpm N] [--tpm N] [--budget-usd X] [--period day|month|total]
          [--expires-in 720h] [--metadata JSON]     issue a key; its secret is printed once
  list                                               every key
  show    ID                                         one key
  limits  ID [--model M]... [--rpm N] [--tpm N] [--budget-usd X] [--period P]   change a key's limits
  rotate  ID [--grace 1h]                            a new secret; the old one opens for the grace
  revoke  ID                                         the key stops opening at once (other instances within 2 s)
  spend   ID [--from RFC3339 --to RFC3339]           the ledger's spend (default: the budget period)

Every subcommand takes --addr, --ops-addr, --token and --json.`

// keyView is a key as the admin API shows it.
type keyView struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Hint         string          `json:"hint"`
	Models       []string        `json:"models"`
	RPM          int             `json:"rpm"`
	TPM          int             `json:"tpm"`
	BudgetUSD    float64         `json:"budget_usd"`
	BudgetPeriod string          `json:"budget_period"`
	ExpiresAt    *time.Time      `json:"expires_at"`
	Metadata     json.RawMessage `json:"metadata"`
	CreatedAt    time.Time       `json:"created_at"`
	Status       string          `json:"status"`
}

func runKeys(ctx context.Context, args []string, std Stdio) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(std.Err, keysUsage)
		if len(args) > 0 {
			return nil
		}
		return fmt.Errorf("%w: want a subcommand", errUsage)
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("keys "+sub, std)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	var models stringList
	limits := func() (rpm, tpm *int, budget *float64, period *string) {
		fs.Var(&models, "model", "a model the key may call (repeatable): auto, a tier name or a provider model; none: every model")
		return fs.Int("rpm", -1, "requests per minute; 0: unlimited"), fs.Int("tpm", -1, "tokens per minute; 0: unlimited"),
			fs.Float64("budget-usd", -1, "budget in US dollars per period; 0: none"), fs.String("period", "", "budget period: day, month (default) or total")
	}
	// The key's id may come before the flags or after them.
	var id string
	takesID := sub != "create" && sub != "list"
	if takesID && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	var path, method string
	var body map[string]any
	switch sub {
	case "create":
		name := fs.String("name", "", "the key's name (required)")
		rpm, tpm, budget, period := limits()
		expiresIn := fs.String("expires-in", "", "lifetime, a Go duration such as 720h; empty: no expiry")
		metadata := fs.String("metadata", "", `a JSON object kept with the key, e.g. '{"team": "web"}'`)
		if err := parseFlags(fs, rest, 0); err != nil {
			return err
		}
		if *name == "" {
			fs.Usage()
			return fmt.Errorf("%w: --name is required", errUsage)
		}
		body = limitBody(models, *rpm, *tpm, *budget, *period)
		body["name"] = *name
		if *expiresIn != "" {
			body["expires_in"] = *expiresIn
		}
		if *metadata != "" {
			if !json.Valid([]byte(*metadata)) {
				return fmt.Errorf("%w: --metadata is not JSON", errUsage)
			}
			body["metadata"] = json.RawMessage(*metadata)
		}
		method, path = http.MethodPost, "/admin/keys"
	case "list":
		if err := parseFlags(fs, rest, 0); err != nil {
			return err
		}
		method, path = http.MethodGet, "/admin/keys"
	case "show", "revoke":
		if err := parseKeyArgs(fs, rest, &id); err != nil {
			return err
		}
		method, path = http.MethodGet, "/admin/keys/"+url.PathEscape(id)
		if sub == "revoke" {
			method, path = http.MethodPost, path+"/revoke"
		}
	case "limits":
		rpm, tpm, budget, period := limits()
		if err := parseKeyArgs(fs, rest, &id); err != nil {
			return err
		}
		body = limitBody(models, *rpm, *tpm, *budget, *period)
		if len(body) == 0 {
			return fmt.Errorf("%w: change at least one of --model, --rpm, --tpm, --budget-usd, --period", errUsage)
		}
		method, path = http.MethodPatch, "/admin/keys/"+url.PathEscape(id)
	case "rotate":
		grace := fs.Duration("grace", 0, "how long the old secret keeps opening (at most 168h)")
		if err := parseKeyArgs(fs, rest, &id); err != nil {
			return err
		}
		method, path = http.MethodPost, "/admin/keys/"+url.PathEscape(id)+"/rotate?grace="+url.QueryEscape(grace.String())
	case "spend":
		from := fs.String("from", "", "start, RFC 3339 (with --to)")
		to := fs.String("to", "", "end, RFC 3339 (with --from)")
		if err := parseKeyArgs(fs, rest, &id); err != nil {
			return err
		}
		q := url.Values{}
		if *from != "" || *to != "" {
			q.Set("from", *from)
			q.Set("to", *to)
		}
		method, path = http.MethodGet, "/admin/keys/"+url.PathEscape(id)+"/spend"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	default:
		fmt.Fprintln(std.Err, keysUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	var rd io.Reader
	ctype := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, ctype = bytes.NewReader(b), "application/json"
	}
	var raw json.RawMessage
	if err := client().do(ctx, method, path, ctype, rd, &raw); err != nil {
		return err
	}
	if *asJSON {
		fmt.Fprintln(std.Out, string(raw))
		return nil
	}
	return printKeys(std.Out, raw)
}

// parseKeyArgs parses the flags and takes the key's id from before or
// after them.
func parseKeyArgs(fs *flag.FlagSet, rest []string, id *string) error {
	n := 1
	if *id != "" {
		n = 0
	}
	if err := parseFlags(fs, rest, n); err != nil {
		return err
	}
	if *id == "" {
		*id = fs.Arg(0)
	}
	return nil
}

// limitBody is the JSON of the limit flags that were set.
func limitBody(models stringList, rpm, tpm int, budget float64, period string) map[string]any {
	b := map[string]any{}
	if models != nil {
		b["models"] = []string(models)
	}
	// -1, the flags' default, is "not given"; any other value goes to
	// the server, which refuses what is out of range.
	if rpm != -1 {
		b["rpm"] = rpm
	}
	if tpm != -1 {
		b["tpm"] = tpm
	}
	if budget != -1 {
		b["budget_usd"] = budget
	}
	if period != "" {
		b["budget_period"] = period
	}
	return b
}

// printKeys prints the API's answer for a person.
func printKeys(w io.Writer, raw json.RawMessage) error {
	var out struct {
		Key    *keyView  `json:"key"`
		Keys   []keyView `json:"keys"`
		Secret string    `json:"secret"`
		Spend  *struct {
			From, To        time.Time
			Requests        int64   `json:"requests"`
			PartialRequests int64   `json:"partial_requests"`
			InputTokens     int64   `json:"input_tokens"`
			OutputTokens    int64   `json:"output_tokens"`
			SpendUSD        float64 `json:"spend_usd"`
		} `json:"spend"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k keyView) {
		models := strings.Join(k.Models, ",")
		if models == "" {
			models = "*"
		}
		budget := "-"
		if k.BudgetUSD > 0 {
			budget = fmt.Sprintf("$%.2f/%s", k.BudgetUSD, k.BudgetPeriod)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\trpm %d\ttpm %d\t%s\n", k.ID, k.Name, k.Hint, k.Status, models, k.RPM, k.TPM, budget)
	}
	switch {
	case out.Spend != nil:
		sp := out.Spend
		fmt.Fprintf(w, "%s to %s: %d requests (%d partial), %d input and %d output tokens, $%.6f\n",
			sp.From.Format(time.RFC3339), sp.To.Format(time.RFC3339), sp.Requests, sp.PartialRequests, sp.InputTokens, sp.OutputTokens, sp.SpendUSD)
		return nil
	case out.Key != nil:
		row(*out.Key)
	default:
		for _, k := range out.Keys {
			row(k)
		}
		if len(out.Keys) == 0 {
			fmt.Fprintln(w, "no keys")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if out.Secret != "" {
		fmt.Fprintf(w, "secret (shown once, store it now): %s\n", out.Secret)
	}
	return nil
}
