package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGaugeParse(t *testing.T) {
	g := newGaugeSampler("", []string{"pool_health", "pool_util"}, nil)
	g.parse(strings.NewReader(`# HELP pool_health health
# TYPE pool_health gauge
pool_health{instance="a"} 95
pool_health{instance="b"} 81.5
pool_health_total 3
pool_util 0.25 1700000000000
other 7
pool_util NaN
`))
	got := g.report()
	if h := got["pool_health"]; h.Samples != 2 || h.Min != 81.5 || h.Max != 95 || h.Mean != 88.25 {
		t.Errorf("pool_health %+v", h)
	}
	if u := got["pool_util"]; u.Samples != 1 || u.Min != 0.25 {
		t.Errorf("pool_util %+v (timestamp or NaN mishandled)", u)
	}
}

func TestGaugesSampledDuringRun(t *testing.T) {
	// /metrics is on the operators' listener, not the API's.
	var scrapes, publicScrapes atomic.Int64
	ops := http.NewServeMux()
	ops.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "wingate_pool_health %d\n", 100-n)
	})
	opsSrv := httptest.NewServer(ops)
	defer opsSrv.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		publicScrapes.Add(1)
		http.NotFound(w, r)
	})
	mux.Handle("/", newFakeAPI())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Connections: 2, Duration: 300 * time.Millisecond, Mix: Mix{EpChallenge: 1},
		Gauges: []string{"wingate_pool_health", "absent_metric"}, GaugeEvery: 50 * time.Millisecond,
		Ops: opsSrv.URL,
	})
	if n := publicScrapes.Load(); n != 0 {
		t.Errorf("%d scrapes of the API listener's /metrics", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := rep.Gauges["wingate_pool_health"]
	if g.Samples < 2 || g.Max != 99 || g.Min >= g.Max {
		t.Errorf("gauge %+v after %d scrapes", g, scrapes.Load())
	}
	min80, min99 := 80.0, 99.5
	if !rep.Evaluate(Targets{Gauges: map[string]GaugeTarget{"wingate_pool_health": {Min: &min80}}}) {
		t.Errorf("health >= 80 failed: %+v", rep.Checks)
	}
	if rep.Evaluate(Targets{Gauges: map[string]GaugeTarget{"wingate_pool_health": {Min: &min99}}}) {
		t.Errorf("health >= 99.5 passed: %+v", rep.Checks)
	}
	if mean := g.Mean; !rep.Evaluate(Targets{Gauges: map[string]GaugeTarget{"wingate_pool_health": {MeanMin: &mean, MeanMax: &mean}}}) {
		t.Errorf("mean bounds equal to the mean failed: %+v", rep.Checks)
	}
	if rep.Evaluate(Targets{Gauges: map[string]GaugeTarget{"wingate_pool_health": {MeanMin: &min99}}}) {
		t.Errorf("mean >= 99.5 passed: %+v", rep.Checks)
	}
	if rep.Evaluate(Targets{Gauges: map[string]GaugeTarget{"absent_metric": {Min: &min80}}}) {
		t.Errorf("a gauge never sampled passed: %+v", rep.Checks)
	}
}
