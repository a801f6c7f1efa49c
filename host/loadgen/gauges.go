package loadgen

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// GaugeReport summarises the samples of one server metric taken during
// the run from the server's /metrics (Prometheus text format). With
// several series of one name (labels), every series' samples count.
type GaugeReport struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Mean    float64 `json:"mean"`
	Max     float64 `json:"max"`
}

// gaugeSampler scrapes /metrics every interval and keeps the values of
// the named metrics.
type gaugeSampler struct {
	url    string
	names  map[string]bool
	client *http.Client
	sums   map[string]*gaugeAcc
}

type gaugeAcc struct {
	n             int
	min, max, sum float64
}

func newGaugeSampler(base string, names []string, client *http.Client) *gaugeSampler {
	g := &gaugeSampler{url: base + "/metrics", names: map[string]bool{}, client: client, sums: map[string]*gaugeAcc{}}
	for _, n := range names {
		g.names[n] = true
	}
	return g
}

// run samples until ctx ends.
func (g *gaugeSampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		g.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *gaugeSampler) sample(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		return
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return
	}
	g.parse(resp.Body)
}

// parse reads Prometheus text and records the named metrics' values.
func (g *gaugeSampler) parse(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !g.names[name] {
			continue
		}
		rest := line[len(name):]
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		a := g.sums[name]
		if a == nil {
			a = &gaugeAcc{min: v, max: v}
			g.sums[name] = a
		}
		a.n++
		a.sum += v
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
	}
}

func (g *gaugeSampler) report() map[string]GaugeReport {
	out := map[string]GaugeReport{}
	for name := range g.names {
		a := g.sums[name]
		if a == nil {
			out[name] = GaugeReport{}
			continue
		}
		out[name] = GaugeReport{Samples: a.n, Min: a.min, Mean: a.sum / float64(a.n), Max: a.max}
	}
	return out
}
