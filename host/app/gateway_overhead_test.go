package app

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	gatewayOverhead = flag.Bool("gateway-overhead", false, "measure the gateway's overhead against the fake provider called directly (task gateway-bench)")
	gatewayRounds   = flag.Int("gateway-rounds", 3, "alternating rounds of the gateway overhead drill")
	gatewayRound    = flag.Duration("gateway-round", 4*time.Second, "length of each target's turn in a round, at constant rate and saturated")
)

// overheadTarget is one way of asking for the same answer.
type overheadTarget struct {
	name string
	url  string
	auth string
	body []byte
}

// overheadStats is one target's figures over the rounds.
type overheadStats struct {
	lat        []time.Duration // at the constant rate
	satN       int64           // saturated: requests answered
	satSecs    float64
	satCPU     time.Duration // process CPU over the saturated turns
	failed     int64
	firstError string
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (st *overheadStats) do(client *http.Client, tg overheadTarget) (time.Duration, bool) {
	req, _ := http.NewRequest("POST", tg.url, bytes.NewReader(tg.body))
	req.Header.Set("Content-Type", "application/json")
	if tg.auth != "" {
		req.Header.Set("Authorization", tg.auth)
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return time.Since(start), res.StatusCode == 200
}

// constantRate sends rate requests a second for d, each on its own
// goroutine at its scheduled time, and records their latencies.
func (st *overheadStats) constantRate(client *http.Client, tg overheadTarget, rate int, d time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	every := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat, ok := st.do(client, tg)
			mu.Lock()
			defer mu.Unlock()
			if !ok {
				st.failed++
				return
			}
			st.lat = append(st.lat, lat)
		}()
	}
	wg.Wait()
}

// saturated runs conns closed loops for d and adds the answers and the
// process CPU they took.
func (st *overheadStats) saturated(client *http.Client, tg overheadTarget, conns int, d time.Duration) {
	var n, failed atomic.Int64
	cpu0, t0 := processCPU(), time.Now()
	deadline := t0.Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, ok := st.do(client, tg); ok {
					n.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	st.satCPU += processCPU() - cpu0
	st.satSecs += time.Since(t0).Seconds()
	st.satN += n.Load()
	st.failed += failed.Load()
}

func quantile(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// TestGatewayOverhead measures what the gateway adds to a model call: the
// fake provider called directly, and through `wingate serve`'s assembly
// on a fixed tier with a short message (a user token, a virtual key
// whose budget, rpm and tpm are enforced through Redis, and one with no
// limits, which never touches Redis) and on auto with
// an 80-message history, in alternating rounds at a constant 500
// requests a second and saturated (16 connections). CPU per request is
// the process's (client, gateway and fake in one process) minus the
// direct calls'. Without -gateway-overhead it runs one short round and
// checks only behaviour: every call answered, the key's ledger equal to
// its calls.
func TestGatewayOverhead(t *testing.T) {
	rounds, turn, rate := *gatewayRounds, *gatewayRound, 500
	if !*gatewayOverhead {
		rounds, turn, rate = 1, 300*time.Millisecond, 100
	}
	providerURL, _ := fakeOpenAI(t, fakeUsage{20, 8}, 0)
	f := startKeyFleet(t, 1, providerURL, "closed")
	base := f.bases[0]
	k := createKey(t, opsBase(f.apps[0]), `{"name": "bench", "budget_usd": 100000, "rpm": 1000000, "tpm": 1000000000}`)
	free := createKey(t, opsBase(f.apps[0]), `{"name": "bench-unlimited"}`)
	user := bearer(t, 1)

	short := []map[string]string{{"role": "user", "content": "Give me one opener for a climbing gym."}}
	var history []map[string]string
	for i := range 80 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		history = append(history, map[string]string{"role": role, "content": fmt.Sprintf("Message %d of a long coaching chat about meeting people at the climbing gym, and what to say first.", i)})
	}
	history = append(history, map[string]string{"role": "user", "content": "So what do I say tomorrow?"})
	body := func(model string, msgs []map[string]string) []byte {
		b, _ := json.Marshal(map[string]any{"model": model, "max_tokens": 8, "messages": msgs})
		return b
	}
	targets := []overheadTarget{
		{"direct", providerURL + "/chat/completions", "Bearer test-key", body("claude-haiku-4-5", short)},
		{"fixed tier", base + "/v1/chat/completions", user, body("economy", short)},
		{"fixed tier, key", base + "/v1/chat/completions", "Bearer " + k.Secret, body("economy", short)},
		{"fixed, free key", base + "/v1/chat/completions", "Bearer " + free.Secret, body("economy", short)},
		{"auto, 80 messages", base + "/v1/chat/completions", user, body("auto", history)},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for _, tg := range targets { // warm the pools and the caches
		for range 20 {
			if _, ok := (&overheadStats{}).do(client, tg); !ok {
				t.Fatalf("%s: warm-up call failed", tg.name)
			}
		}
	}
	stats := make([]*overheadStats, len(targets))
	for i := range stats {
		stats[i] = &overheadStats{}
	}
	for r := range rounds {
		for i, tg := range targets {
			stats[i].constantRate(client, tg, rate, turn)
			stats[i].saturated(client, tg, 16, turn)
		}
		t.Logf("round %d of %d done", r+1, rounds)
	}
	direct := stats[0]
	p50d, p99d := quantile(direct.lat, 0.5), quantile(direct.lat, 0.99)
	cpuDirect := direct.satCPU / time.Duration(max(direct.satN, 1))
	thrDirect := float64(direct.satN) / direct.satSecs
	var report strings.Builder
	fmt.Fprintf(&report, "%d rounds of %s per target; constant %d/s, then saturated with 16 connections\n", rounds, turn, rate)
	fmt.Fprintf(&report, "%-18s %8s %8s %10s %10s %12s %10s %8s\n", "target", "p50", "p99", "p50 added", "p99 added", "CPU/request", "gateway", "thr×")
	for i, tg := range targets {
		st := stats[i]
		if st.failed > 0 {
			t.Errorf("%s: %d calls failed", tg.name, st.failed)
		}
		p50, p99 := quantile(st.lat, 0.5), quantile(st.lat, 0.99)
		cpu := st.satCPU / time.Duration(max(st.satN, 1))
		thr := float64(st.satN) / st.satSecs
		fmt.Fprintf(&report, "%-18s %8s %8s %10s %10s %12s %10s %8.2f\n", tg.name, p50.Round(time.Microsecond), p99.Round(time.Microsecond),
			(p50 - p50d).Round(time.Microsecond), (p99 - p99d).Round(time.Microsecond), cpu.Round(time.Microsecond),
			(cpu - cpuDirect).Round(time.Microsecond), thr/thrDirect)
	}
	t.Log("\n" + report.String())

	// The key's ledger holds every call made with it.
	var keyed int64 = 20
	keyed += int64(len(stats[2].lat)) + stats[2].satN
	if n, _, micros := keySpend(t, opsBase(f.apps[0]), k.ID); n != keyed || micros == 0 {
		t.Errorf("the key's ledger: %d requests (%d micro-dollars), want the %d calls made with it", n, micros, keyed)
	}
}
