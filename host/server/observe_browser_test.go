package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/internal/testkit"
)

// chromiumPath finds the Chromium binary: WINGATE_CHROMIUM, then the
// usual names. .ci/run installs Debian's chromium when it is missing.
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("WINGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	tb.Fatal("no Chromium found: install it (apt-get install -y chromium) or set WINGATE_CHROMIUM")
	return ""
}

// panelCheck is what the page reports about one panel.
type panelCheck struct {
	Panel string `json:"panel"`
	OK    bool   `json:"ok"`
	Text  string `json:"text"`
}

// checkPanelsJS returns, for every panel and KPI tile, whether it shows
// values (no placeholder dash, no empty-state message), with its text.
const checkPanelsJS = `(() => {
  const dash = "\u2014";
  const txt = (sel) => { const e = document.querySelector(sel); return e ? e.innerText.trim() : ""; };
  const has = (sel) => { const e = document.querySelector(sel); return !!e && e.innerText.trim() !== "" && e.innerText.trim() !== dash; };
  const out = [];
  for (const k of ["rate", "p95", "cache", "pool", "policy", "ai"]) {
    out.push({panel: "kpi-" + k, ok: has("#k-" + k) && txt("#k-" + k) !== "n/a", text: txt("[data-kpi=" + k + "]")});
  }
  const noEmpty = (sel) => !document.querySelector(sel + " .empty");
  const p = (name, ok) => out.push({panel: name, ok: ok, text: txt("[data-panel=" + name + "]").slice(0, 400)});
  p("traffic", !!document.querySelector("#chart-rate svg path") && !/waiting for traffic/.test(txt("#chart-rate")));
  p("latency", !!document.querySelector("#chart-p95 svg path, #chart-p95 svg circle") && !/waiting for traffic/.test(txt("#chart-p95")));
  p("routes", noEmpty("#routes") && document.querySelectorAll("#routes tr").length >= 3 && has("#routes td.v"));
  p("cache", noEmpty("#cache") && /%/.test(txt("#cache")) && /Redis up/.test(txt("#redis")));
  p("pool", noEmpty("#pool") && has("#pool .mv"));
  p("policies", noEmpty("#policies") && /cache/.test(txt("#policies")) && has("#policies td.v"));
  p("ai", noEmpty("#ai") && has("#ai .amt") && /\$/.test(txt("#ai")));
  p("alerts", /firing/.test(txt("#alerts")) && /PolicyFallbackDemo/.test(txt("#alerts")));
  return JSON.stringify(out);
})()`

// TestDashboardInBrowser opens /dashboard in headless Chromium while
// traffic runs through every observed part, waits for live updates over
// the event stream, checks that every panel shows values, and saves a
// screenshot under artifacts/.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	// The shipped rules, plus one that fires at once: the route and
	// compress kinds have no policy in this fixture, so they fall back.
	rules := alert.DefaultRules()
	demo, err := alert.ParseRules([]byte(`{"rules": [{"name": "PolicyFallbackDemo",
		"expr": "policy_fallback_ratio[1m] > 1% and policy_decisions[1m] >= 2", "severity": "warning",
		"summary": "{{pct}} of {{kind}} decisions fell back"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h := newObservedHost(t, append(rules, demo...)...)

	// Background traffic until the test ends.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			h.quiet(t, "GET", "/api/challenges", true, "")
			h.quiet(t, "GET", "/api/users/1/reputation", true, "")
			h.quiet(t, "GET", fmt.Sprintf("/api/users/%d/matches", 1), true, "")
			if i%10 == 0 {
				h.quiet(t, "GET", "/healthz", false, "")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	defer func() { stop(); wg.Wait() }()
	h.traffic(t, 3) // sessions and chat messages

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1500),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()

	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1440, 1500),
		chromedp.Navigate(h.url+"/dashboard"),
		chromedp.WaitVisible("#routes"),
	); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}

	// Live updates: the page counts the state events it has drawn.
	updates := func() int {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Number(document.body.dataset.updates || 0)`))
		if err != nil {
			t.Fatalf("read the update count: %v", err)
		}
		return n
	}
	first := updates()
	deadline := time.Now().Add(30 * time.Second)
	for updates() < first+3 {
		if time.Now().After(deadline) {
			t.Fatalf("no live updates: %d state events after 30 s (first read %d)", updates(), first)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every panel shows values once the traffic has reached each part.
	var checks []panelCheck
	deadline = time.Now().Add(45 * time.Second)
	for {
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](checkPanelsJS))
		if err != nil {
			t.Fatalf("check panels: %v", err)
		}
		checks = nil
		if err := json.Unmarshal([]byte(raw), &checks); err != nil {
			t.Fatalf("panel checks %q: %v", raw, err)
		}
		ok := true
		for _, c := range checks {
			ok = ok && c.OK
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(checks) != 14 {
		t.Errorf("%d panel checks, want 14", len(checks))
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("panel %s shows no values: %q", c.Panel, c.Text)
		}
	}
	updated1, _ := chromedp.Run(bctx, chromedp.Text("#updated"))
	time.Sleep(1500 * time.Millisecond)
	updated2, _ := chromedp.Run(bctx, chromedp.Text("#updated"))
	if updated1 == updated2 {
		t.Errorf("the update time stayed at %q for 1.5 s", updated1)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join(testkit.RepoRoot(t), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot (%d KiB): %s", len(png)/1024, path)
	if !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("screenshot is not a PNG")
	}
}

// quiet is do without failing the test from a background goroutine once
// the server is gone.
func (h *observedHost) quiet(tb testing.TB, method, path string, auth bool, body string) {
	req, err := newRequest(method, h.url+path, body)
	if err != nil {
		return
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	if res, err := h.client.Do(req); err == nil {
		res.Body.Close()
	}
}
