package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/app"
)

// TestKeysCLI: a key issued, listed, limited, used, rotated and revoked
// with `wingate keys` against a running host, and its spend read back.
func TestKeysCLI(t *testing.T) {
	const token = "admin-token-for-the-keys-cli-test"
	h, base := startHost(t, func(c *app.Config) { c.AdminToken = token })
	admin := []string{"--addr", base, "--ops-addr", h.OpsAddr(), "--token", token}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCmd(t, append(append([]string{"keys"}, args...), admin...)...)
	}
	code, out, errOut := cli("create", "--name", "web", "--model", "economy", "--budget-usd", "2.5", "--period", "day", "--rpm", "100",
		"--metadata", `{"team": "web"}`, "--expires-in", "720h")
	secret := ""
	if _, after, ok := strings.Cut(out, "store it now): "); ok {
		secret = strings.TrimSpace(after)
	}
	if code != 0 || !strings.Contains(out, "$2.50/day") || !strings.Contains(out, "rpm 100") || secret == "" {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	id := strings.Fields(out)[0]
	if code, out, _ := cli("list"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "active") || strings.Contains(out, secret) {
		t.Fatalf("list (the secret must not be shown again): %d %q", code, out)
	}
	// The key calls the gateway.
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model": "economy", "messages": [{"role": "user", "content": "hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("call with the key: %v %v", res, err)
	}
	res.Body.Close()
	if code, out, _ := cli("spend", id); code != 0 || !strings.Contains(out, "1 requests (0 partial)") {
		t.Fatalf("spend: %d %q", code, out)
	}
	if code, out, _ := cli("limits", id, "--rpm", "5", "--budget-usd", "0"); code != 0 || !strings.Contains(out, "rpm 5") || !strings.Contains(out, "  -\n") {
		t.Fatalf("limits: %d %q", code, out)
	}
	if code, out, _ := cli("rotate", id, "--grace", "1h", "--json"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"secret":"wgk_`) {
		t.Fatalf("rotate: %d %q", code, out)
	}
	if code, out, _ := cli("revoke", id); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %q", code, out)
	}
	if code, _, errOut := cli("show", "vk_nosuchkey"); code != 1 || !strings.Contains(errOut, "no such API key") {
		t.Fatalf("show an unknown key: %d %q", code, errOut)
	}
	if code, _, errOut := cli("create", "--name", "x", "--rpm", "-5"); code != 1 || !strings.Contains(errOut, "rpm") {
		t.Fatalf("create with rpm -5: %d %q", code, errOut)
	}
	if code, _, _ := cli("create"); code != 2 {
		t.Fatalf("create without --name: exit %d, want 2", code)
	}
}

// TestReadmeKeysCommands runs the README's virtual keys commands as
// written (WINGATE_ADDR, WINGATE_OPS_ADDR and WINGATE_ADMIN_TOKEN naming a
// running host, KEY_ID the key the first command created).
func TestReadmeKeysCommands(t *testing.T) {
	const token = "admin-token-for-the-readme-keys-test"
	h, base := startHost(t, func(c *app.Config) { c.AdminToken = token })
	t.Setenv("WINGATE_ADDR", base)
	t.Setenv("WINGATE_OPS_ADDR", h.OpsAddr())
	t.Setenv("WINGATE_ADMIN_TOKEN", token)
	var lines []string
	for _, b := range readmeSection(t, "### Virtual keys", "go test -v -run TestChatReplay") {
		if b.lang == "sh" {
			lines = append(lines, b.lines...)
		}
	}
	if len(lines) < 6 || !strings.HasPrefix(lines[0], "wingate keys create ") {
		t.Fatalf("README: the virtual keys block is not as expected: %q", lines)
	}
	keyID := ""
	for _, line := range lines {
		args := strings.Fields(line)
		if args[0] != "wingate" {
			t.Fatalf("README line %q is not a wingate command", line)
		}
		for i, a := range args {
			if a == `"$KEY_ID"` {
				args[i] = keyID
			}
		}
		code, out, errOut := runCmd(t, args[1:]...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", line, code, out, errOut)
		}
		if keyID == "" {
			keyID = strings.Fields(out)[0]
			if !strings.HasPrefix(keyID, "vk_") || !strings.Contains(out, "$50.00/month") || !strings.Contains(out, "auto,economy") {
				t.Fatalf("%s:\n%s", line, out)
			}
		}
		if strings.Contains(line, " revoke ") && !strings.Contains(out, "revoked") {
			t.Errorf("%s:\n%s", line, out)
		}
		if strings.Contains(line, " limits ") && !strings.Contains(out, "$80.00/month") {
			t.Errorf("%s:\n%s", line, out)
		}
	}
}
