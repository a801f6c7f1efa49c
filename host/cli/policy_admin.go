package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wingman-app/wingate/host/rollout"
)

func init() {
	policyCommands["ls"] = command{summary: "list the policy versions of a running host (admin API)", run: runPolicyLs}
	policyCommands["push"] = command{summary: "upload a policy version (admin API), optionally activating it", run: runPolicyPush}
	policyCommands["activate"] = command{summary: "activate a stored policy version (admin API)", run: runPolicyActivate}
	policyCommands["rollback"] = command{summary: "roll a kind back to its last good version before the current one, or --to a version (admin API)", run: runPolicyRollback}
	policyCommands["shadow"] = command{summary: "start, stop or show shadow runs (admin API)", run: runPolicyShadow}
	policyCommands["status"] = command{summary: "show what a running host serves (admin API)", run: runPolicyStatus}
	policyCommands["keygen"] = command{summary: "make an ed25519 key pair for signing policies", run: runPolicyKeygen}
	policyCommands["sign"] = command{summary: "write the detached signature of a policy module", run: runPolicySign}
}

// adminClient talks to a host's admin API.
type adminClient struct {
	base  string
	token string
	hc    *http.Client
}

// adminFlags adds --addr, --ops-addr and --token to fs. --addr is the
// server as serve listens (WINGATE_ADDR, the config file's addr, or the
// default); the admin API is on its operators' listener, --ops-addr
// (WINGATE_OPS_ADDR; empty: derived from --addr as serve derives it).
// The token defaults to WINGATE_ADMIN_TOKEN, else the development admin
// token of --addr.
func adminFlags(fs *flag.FlagSet) func() *adminClient {
	addr := fs.String("addr", configuredAddr(os.Getenv), "the server's address, host:port or URL (WINGATE_ADDR, or the config file's addr)")
	opsAddr := fs.String("ops-addr", os.Getenv("WINGATE_OPS_ADDR"), "the server's operators' address, where /admin is (WINGATE_OPS_ADDR; empty: 127.0.0.1 and --addr's port + 1)")
	token := secretFlag(fs, "token", "WINGATE_ADMIN_TOKEN", "admin bearer token; empty: the development admin token of --addr", os.Getenv)
	timeout := fs.Duration("timeout", 2*time.Minute, "request timeout")
	return func() *adminClient {
		tok := token()
		if tok == "" {
			tok, _, _ = readDevFile(*addr, devAdminFile) // absent: the server answers admin_disabled or unauthorized
		}
		return &adminClient{base: adminBaseURL(*addr, *opsAddr), token: tok, hc: &http.Client{Timeout: *timeout}}
	}
}

// adminError is an error answer of the admin API.
type adminError struct {
	Status  int
	Code    string
	Message string
	Step    string
	Reason  string
}

func (e *adminError) Error() string {
	if e.Code == "rejected" {
		return fmt.Sprintf("rejected at %s: %s", e.Step, e.Reason)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// do sends one request and decodes the JSON answer into out.
func (c *adminClient) do(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code, Message, Step, Reason string
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "http_error", strings.TrimSpace(string(b))
		}
		return &adminError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Step: e.Error.Step, Reason: e.Error.Reason}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func printVersions(w io.Writer, recs []rollout.Record) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tNAME\tVERSION\tSTATUS\tCREATED\tSIGNED\tREASON")
	for _, r := range recs {
		signed := "no"
		if r.Signature != "" {
			signed = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, cell(r.Kind), cell(r.Name), r.Short(), r.Status,
			r.CreatedAt.Format(time.RFC3339), signed, cell(r.Reason))
	}
	tw.Flush()
}

// cell makes s one table cell: a line break or a tab in a name or a
// reason would break the columns of every row after it.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

func printVersion(w io.Writer, verb string, r rollout.Record) {
	fmt.Fprintf(w, "%s version %d: %s %s@%s (%s)\n", verb, r.ID, r.Kind, r.Name, r.Short(), r.Status)
}

func runPolicyLs(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy ls", std)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var out struct {
		Versions []rollout.Record       `json:"versions"`
		Instance rollout.InstanceStatus `json:"instance"`
	}
	if err := client().do(ctx, http.MethodGet, "/admin/policies", "", nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(std.Out, out)
	}
	printVersions(std.Out, out.Versions)
	printActive(std.Out, out.Instance.Active)
	return nil
}

// printActive lists the versions this instance serves with their
// resource figures.
func printActive(w io.Writer, active []rollout.ActiveStatus) {
	if len(active) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTIVE	VERSION	TIER	CALLS	P50_US	P99_US	MAX_US	TIMEOUTS	TRAPS	RECYCLES	FORCED	LOG_BYTES	LOG_DROPPED	PAGES	QUARANTINED")
	for _, a := range active {
		r := a.Resources
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\n", a.Kind, a.Version, a.ExecTier, a.Calls,
			r.CallP50Micros, r.CallP99Micros, r.CallMaxMicros, a.Timeouts, a.Traps, r.Recycles, r.ForcedRecycles,
			r.LogBytes, r.LogDropped, r.MemoryPages, a.Quarantined)
	}
	tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runPolicyPush(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy push", std)
	client := adminFlags(fs)
	kind := fs.String("kind", "", "decision kind: cache, route or compress (required)")
	name := fs.String("name", "", "policy name (default: the kind)")
	configPath := fs.String("config", "", "file holding the policy's JSON configuration")
	sigPath := fs.String("sig", "", "detached signature file (default: FILE.wasm.sig when it exists)")
	casesDir := fs.String("cases", "", "directory (or one file) of case files run before activation")
	deadline := fs.Float64("deadline-ms", 0, "per-call deadline in milliseconds (0: the kind's default)")
	activate := fs.Bool("activate", false, "activate the version once stored")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy push --kind KIND [flags] FILE.wasm")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if *kind == "" {
		return fmt.Errorf("%w: --kind is required", errUsage)
	}
	path := fs.Arg(0)
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fields := map[string]string{"kind": *kind, "name": *name, "activate": strconv.FormatBool(*activate)}
	if *deadline > 0 {
		fields["deadline_ms"] = strconv.FormatFloat(*deadline, 'f', -1, 64)
	}
	if *configPath != "" {
		b, err := readConfig(*configPath)
		if err != nil {
			return err
		}
		fields["config"] = string(b)
	}
	sp := *sigPath
	if sp == "" {
		if _, err := os.Stat(path + ".sig"); err == nil {
			sp = path + ".sig"
		}
	}
	if sp != "" {
		b, err := os.ReadFile(sp)
		if err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		fields["signature"] = strings.TrimSpace(string(b))
	}
	if *casesDir != "" {
		b, err := readCaseFiles(*casesDir)
		if err != nil {
			return err
		}
		fields["cases"] = string(b)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		if v != "" {
			_ = mw.WriteField(k, v)
		}
	}
	fw, err := mw.CreateFormFile("wasm", filepath.Base(path))
	if err != nil {
		return err
	}
	fw.Write(wasm)
	mw.Close()
	var out struct {
		Version rollout.Record `json:"version"`
	}
	if err := client().do(ctx, http.MethodPost, "/admin/policies", mw.FormDataContentType(), &body, &out); err != nil {
		return err
	}
	verb := "stored"
	if *activate {
		verb = "activated"
	}
	printVersion(std.Out, verb, out.Version)
	return nil
}

// readCaseFiles merges the case files at path (a file or a directory of
// *.json) into one JSON array.
func readCaseFiles(path string) ([]byte, error) {
	files := []string{path}
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	} else if fi.IsDir() {
		files, _ = filepath.Glob(filepath.Join(path, "*.json"))
	}
	var all []json.RawMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("cases: %w", err)
		}
		var cs []json.RawMessage
		if err := json.Unmarshal(b, &cs); err != nil {
			return nil, fmt.Errorf("cases: %s: %w", f, err)
		}
		all = append(all, cs...)
	}
	return json.Marshal(all)
}

func runPolicyActivate(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy activate", std)
	client := adminFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy activate [flags] ID")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: version id %q", errUsage, fs.Arg(0))
	}
	var out struct {
		Version rollout.Record `json:"version"`
	}
	if err := client().do(ctx, http.MethodPost, "/admin/policies/"+strconv.FormatInt(id, 10)+"/activate", "", nil, &out); err != nil {
		return err
	}
	printVersion(std.Out, "activated", out.Version)
	return nil
}

func runPolicyRollback(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy rollback", std)
	client := adminFlags(fs)
	kind := fs.String("kind", "", "decision kind to roll back (required)")
	to := fs.Int64("to", 0, "version id to go back to (default: the last good version before the current one)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *kind == "" {
		return fmt.Errorf("%w: --kind is required", errUsage)
	}
	if *to < 0 {
		return fmt.Errorf("%w: --to must be a version id", errUsage)
	}
	path := "/admin/rollback/" + url.PathEscape(*kind)
	if *to > 0 {
		path += "?to=" + strconv.FormatInt(*to, 10)
	}
	var out struct {
		Version rollout.Record `json:"version"`
	}
	if err := client().do(ctx, http.MethodPost, path, "", nil, &out); err != nil {
		return err
	}
	printVersion(std.Out, "rolled back to", out.Version)
	return nil
}

func runPolicyShadow(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy shadow", std)
	client := adminFlags(fs)
	sample := fs.Float64("sample", 0, "share of live calls copied to the candidate, in (0, 1] (0: the host's default)")
	kind := fs.String("kind", "", "decision kind (stop)")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy shadow start [--sample S] ID | stop --kind KIND | ls")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: want start, stop or ls", errUsage)
	}
	sub := args[0]
	if err := parseFlags(fs, args[1:], -1); err != nil {
		return err
	}
	c := client()
	switch sub {
	case "start":
		if fs.NArg() != 1 {
			fs.Usage()
			return fmt.Errorf("%w: shadow start wants a version id", errUsage)
		}
		q := ""
		if *sample > 0 {
			q = "?sample=" + strconv.FormatFloat(*sample, 'f', -1, 64)
		}
		var out struct {
			Version rollout.Record `json:"version"`
		}
		if err := c.do(ctx, http.MethodPost, "/admin/policies/"+url.PathEscape(fs.Arg(0))+"/shadow"+q, "", nil, &out); err != nil {
			return err
		}
		printVersion(std.Out, "shadowing", out.Version)
		return nil
	case "stop":
		if *kind == "" {
			return fmt.Errorf("%w: shadow stop wants --kind", errUsage)
		}
		var out struct {
			Shadow rollout.ShadowStats `json:"shadow"`
		}
		if err := c.do(ctx, http.MethodDelete, "/admin/shadow/"+url.PathEscape(*kind), "", nil, &out); err != nil {
			return err
		}
		printShadows(std.Out, []rollout.ShadowStats{out.Shadow})
		return nil
	case "ls":
		var out struct {
			Shadows []rollout.ShadowStats `json:"shadows"`
		}
		if err := c.do(ctx, http.MethodGet, "/admin/shadow", "", nil, &out); err != nil {
			return err
		}
		printShadows(std.Out, out.Shadows)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("%w: unknown shadow subcommand %q", errUsage, sub)
}

func printShadows(w io.Writer, ss []rollout.ShadowStats) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tVERSION\tSAMPLE\tCOMPARED\tAGREEMENT\tCANDIDATE_US\tACTIVE_US\tERRORS\tDROPPED")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3g\t%d\t%.1f%%\t%.1f\t%.1f\t%d\t%d\n", s.Kind, s.ID, s.Version, s.Sample, s.Compared,
			100*s.AgreementRate, s.CandidateMeanUS, s.ActiveMeanUS, s.Errors, s.Dropped)
	}
	tw.Flush()
}

func runPolicyStatus(ctx context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy status", std)
	client := adminFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var out struct {
		Instance rollout.InstanceStatus `json:"instance"`
	}
	if err := client().do(ctx, http.MethodGet, "/admin/status", "", nil, &out); err != nil {
		return err
	}
	return writeJSON(std.Out, out.Instance)
}

func runPolicyKeygen(_ context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy keygen", std)
	out := fs.String("out", "wingate-policy", "write PREFIX.key (private, mode 0600) and PREFIX.pub")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	pub, priv, err := rollout.GenerateKey()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".key", []byte(rollout.EncodePrivateKey(priv)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pub", []byte(rollout.EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "wrote %s.key and %s.pub; configure hosts with WINGATE_POLICY_PUBKEY=%s\n", *out, *out, rollout.EncodePublicKey(pub))
	return nil
}

func runPolicySign(_ context.Context, args []string, std Stdio) error {
	fs := newFlagSet("policy sign", std)
	keyPath := fs.String("key", "", "private key file from keygen (required)")
	out := fs.String("o", "", "signature file (default FILE.wasm.sig; - for stdout)")
	fs.Usage = func() {
		fmt.Fprintln(std.Err, "usage: wingate policy sign --key KEY [-o FILE] FILE.wasm")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if *keyPath == "" {
		return fmt.Errorf("%w: --key is required", errUsage)
	}
	kb, err := os.ReadFile(*keyPath)
	if err != nil {
		return err
	}
	priv, err := rollout.ParsePrivateKey(string(kb))
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	sig := rollout.Sign(priv, wasm)
	if *out == "-" {
		_, err := fmt.Fprintln(std.Out, sig)
		return err
	}
	dst := *out
	if dst == "" {
		dst = fs.Arg(0) + ".sig"
	}
	if err := os.WriteFile(dst, []byte(sig+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "wrote %s\n", dst)
	return nil
}
