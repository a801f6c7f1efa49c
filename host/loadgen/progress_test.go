package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestProgress: the live readings come about every ProgressEvery, their
// last one totals what the report counts (requests and failures), and
// the interval percentiles see the server's delay.
func TestProgress(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		if n.Add(1)%4 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	mix, err := ParseMix("challenges=1")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var readings []Progress
	rep, err := Run(context.Background(), Config{Target: srv.URL, Mix: mix, Connections: 4, Duration: 600 * time.Millisecond,
		ProgressEvery: 100 * time.Millisecond, Progress: func(p Progress) {
			mu.Lock()
			readings = append(readings, p)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(readings) < 4 || len(readings) > 8 {
		t.Fatalf("%d readings over 600 ms at one per 100 ms", len(readings))
	}
	last := readings[len(readings)-1]
	if last.Requests != rep.Requests || last.Errors != rep.Requests-rep.Overall.OK || last.Errors == 0 {
		t.Fatalf("last reading %+v; report %d requests, %d ok", last, rep.Requests, rep.Overall.OK)
	}
	if r := last.ErrorRatio(); r < 0.2 || r > 0.3 {
		t.Errorf("error ratio %.2f, want about 0.25", r)
	}
	for i, p := range readings[:len(readings)-1] {
		if p.Phase != "measured" || p.Rate <= 0 || p.P50 < 2*time.Millisecond || p.P99 < p.P50 {
			t.Errorf("reading %d: %+v", i, p)
		}
		if i > 0 && p.Requests < readings[i-1].Requests {
			t.Errorf("reading %d: the total went down", i)
		}
	}
}
