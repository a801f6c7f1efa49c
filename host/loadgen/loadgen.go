// Package loadgen is the load generator behind `wingate load`: it drives a
// Wingate server on the loopback interface with a realistic mix of app
// requests and reports throughput, latency per endpoint, errors, the cache
// hit ratio and the AI chat's cost against its baseline.
//
// # Bounded and local
//
// A run is bounded in time (Config.Duration, at most MaxDuration) and may
// be bounded in count (Config.Requests). It refuses any target that is not
// a loopback address, and checks the address again when each connection is
// dialled, so a name that resolves elsewhere later is refused too.
//
// # Two modes
//
// Closed loop (ModeClosed): Config.Connections workers each send a request
// as soon as their previous one is answered; it measures capacity.
//
// Constant rate (ModeRate): requests are scheduled at Config.Rate per
// second whatever the server does, and served by up to Config.Connections
// workers. Latency is measured from each request's intended send time, not
// from when a worker got round to sending it, so a stalled server shows up
// as the latency its users would see (no coordinated omission).
//
// # The mix
//
// Users are drawn from a Zipf distribution over ids 1..Config.Users (a few
// users are very active, most are not), challenges likewise over the
// catalogue. Each request picks an endpoint by the weights of Config.Mix
// (DefaultMix): the catalogue, one challenge, reputation, matches, location
// reads and updates, challenge completions and chat messages. Requests
// that need a user carry a bearer token for that user, minted with the
// server's secret (Config.Tokens).
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wingman-app/wingate/host/store/seed"
)

// Mode is how requests are paced.
type Mode string

// The modes of a run.
const (
	ModeClosed Mode = "closed"
	ModeRate   Mode = "rate"
)

// Limits of a run: what keeps a mistyped flag from becoming a flood.
const (
	MaxDuration    = time.Hour
	MaxConnections = 5000
	MaxRequests    = 50_000_000
	MaxRate        = 200_000
)

// TokenFunc returns a bearer token for a user.
type TokenFunc func(userID int64) (string, error)

// Config describes one run. Zero fields take the defaults noted.
type Config struct {
	// Target is the server's base URL, e.g. http://127.0.0.1:8080. Its
	// host must be a loopback address or a name resolving only to them.
	Target string
	// Mode: ModeClosed (default) or ModeRate.
	Mode Mode
	// Connections is the number of workers and the cap on open
	// connections; default 100.
	Connections int
	// Rate is requests per second in ModeRate.
	Rate float64
	// Duration bounds the measured run; default 30 s.
	Duration time.Duration
	// Warmup runs the same load for this long first, unmeasured (fills
	// caches and connection pools).
	Warmup time.Duration
	// NewChats opens a new chat session for each chatting user. By
	// default a user continues their newest session, as a returning user
	// of the app does, and opens one only when they have none: successive
	// runs against one server then extend the same conversations.
	NewChats bool
	// Requests, when positive, stops the run after this many requests.
	Requests int
	// Users is the number of seeded users (ids 1..Users); default 2000.
	Users int
	// Challenges is the size of the catalogue; default seed.NumChallenges.
	Challenges int
	// ZipfS is the Zipf exponent (> 1) of user and challenge popularity;
	// default 1.1.
	ZipfS float64
	// Mix weights the endpoints; default DefaultMix.
	Mix Mix
	// Seed makes the sequence of requests reproducible; default 1.
	Seed uint64
	// Timeout bounds one request; default 10 s.
	Timeout time.Duration
	// Tokens mints bearer tokens; required when the mix has user
	// endpoints.
	Tokens TokenFunc
	// Gauges names server metrics to sample from the server's /metrics
	// every GaugeEvery (default 1 s) during the measured phase, e.g. the
	// database pool's utilisation and health. /metrics is served on the
	// operators' listener: Ops is its base URL (empty: Target's host with
	// its port + 1, the server's default).
	Gauges     []string
	GaugeEvery time.Duration
	Ops        string
	// Progress, when set, receives a live reading of each phase every
	// ProgressEvery (default 1 s) and once at its end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// OpsBase returns the operators' base URL beside the server at u: u's
// scheme and host name with its port + 1.
func OpsBase(u *url.URL) (string, error) {
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65534 {
		return "", fmt.Errorf("loadgen: cannot derive the operators' address from %q: name it", u.Host)
	}
	return u.Scheme + "://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port+1)), nil
}

func (c *Config) defaults() error {
	if c.Mode == "" {
		c.Mode = ModeClosed
	}
	if c.Connections == 0 {
		c.Connections = 100
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Users == 0 {
		c.Users = 2000
	}
	if c.Challenges == 0 {
		c.Challenges = seed.NumChallenges
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.Mix == nil {
		c.Mix = DefaultMix
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.GaugeEvery <= 0 {
		c.GaugeEvery = time.Second
	}
	switch {
	case c.Mode != ModeClosed && c.Mode != ModeRate:
		return fmt.Errorf("loadgen: mode %q: want closed or rate", c.Mode)
	case c.Connections < 1 || c.Connections > MaxConnections:
		return fmt.Errorf("loadgen: connections %d: want 1 to %d", c.Connections, MaxConnections)
	case c.Mode == ModeRate && (c.Rate <= 0 || c.Rate > MaxRate):
		return fmt.Errorf("loadgen: rate %v: want more than 0 and at most %d per second", c.Rate, MaxRate)
	case c.Duration < 0 || c.Duration > MaxDuration || c.Warmup < 0 || c.Warmup > MaxDuration:
		return fmt.Errorf("loadgen: duration and warmup: want 0 to %v", MaxDuration)
	case c.Requests < 0 || c.Requests > MaxRequests:
		return fmt.Errorf("loadgen: requests %d: want 0 to %d", c.Requests, MaxRequests)
	case c.Users < 1 || c.Challenges < 1:
		return fmt.Errorf("loadgen: users and challenges: want at least 1")
	case c.ZipfS <= 1:
		return fmt.Errorf("loadgen: zipf exponent %v: want more than 1", c.ZipfS)
	case c.Timeout < 0:
		return fmt.Errorf("loadgen: timeout: want a positive duration")
	}
	if err := c.Mix.validate(); err != nil {
		return err
	}
	for name, w := range c.Mix {
		if w > 0 && name != EpChallenges && name != EpChallenge && c.Tokens == nil {
			return fmt.Errorf("loadgen: endpoint %s needs tokens: give the server's JWT secret", name)
		}
	}
	return nil
}

// ErrNotLoopback is returned for a target outside the loopback interface.
var ErrNotLoopback = errors.New("loadgen: target is not a loopback address")

// CheckLoopback returns the target's base URL if its host is a loopback
// address or a name that resolves only to loopback addresses.
func CheckLoopback(ctx context.Context, target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("loadgen: target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("loadgen: target %q: want an http:// or https:// URL", target)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("loadgen: target %q: no host", target)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("%w: %s", ErrNotLoopback, host)
		}
		return u, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("loadgen: target %q: %w", target, err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrNotLoopback, host, ip.IP)
		}
	}
	return u, nil
}

// loopbackOnly refuses, at dial time, any connection to a non-loopback
// address.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: dial %s", ErrNotLoopback, address)
	}
	return nil
}

// runner is the state shared by the workers of one run.
type runner struct {
	cfg    Config
	base   string
	picker picker
	// clients are the workers' HTTP clients, one connection each, kept
	// across the warm-up and the measured phase.
	clients []*http.Client
	dials   atomic.Int64 // connections opened

	tokens   sync.Map // user id → token
	sessions sync.Map // user id → chat session id
	homes    sync.Map // user id → [2]float64 home coordinates
	gen      *seed.Generator
	genMu    sync.Mutex

	sent atomic.Int64 // requests started, for the count bound
}

// Run performs a load run and returns its report. It returns an error only
// when the run cannot start (bad configuration, target refused); failed
// requests are counted in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	u, err := CheckLoopback(ctx, cfg.Target)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: loopbackOnly}
	r := &runner{
		cfg:    cfg,
		base:   u.Scheme + "://" + u.Host,
		picker: newPicker(cfg.Mix),
		gen:    seed.New(seed.DefaultSeed),
	}
	// One client with one connection per worker, like as many app
	// clients each with its keep-alive connection: with N workers the
	// server holds N connections, whatever the request rate.
	r.clients = make([]*http.Client, cfg.Connections)
	for i := range r.clients {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				r.dials.Add(1)
				return dialer.DialContext(ctx, network, addr)
			},
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		defer tr.CloseIdleConnections()
		r.clients[i] = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	}
	if cfg.Warmup > 0 {
		r.phase(ctx, "warm-up", cfg.Warmup, 0, cfg.Seed^0x9e3779b97f4a7c15)
	}
	r.sent.Store(0)
	var sampler *gaugeSampler
	sampled := make(chan struct{})
	sctx, stopSampling := context.WithCancel(ctx)
	if len(cfg.Gauges) > 0 {
		ops := cfg.Ops
		if ops == "" {
			if ops, err = OpsBase(u); err != nil {
				stopSampling()
				return nil, err
			}
		} else if _, err := CheckLoopback(ctx, ops); err != nil {
			stopSampling()
			return nil, err
		}
		sampler = newGaugeSampler(strings.TrimRight(ops, "/"), cfg.Gauges, &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 1},
		})
		go func() {
			defer close(sampled)
			sampler.run(sctx, cfg.GaugeEvery)
		}()
	} else {
		close(sampled)
	}
	start := time.Now()
	stats := r.phase(ctx, "measured", cfg.Duration, cfg.Requests, cfg.Seed)
	elapsed := time.Since(start)
	stopSampling()
	<-sampled
	rep := buildReport(cfg, stats, elapsed)
	rep.ConnectionsOpened = r.dials.Load()
	if sampler != nil {
		rep.Gauges = sampler.report()
	}
	return rep, nil
}

// job is one scheduled request: its intended send time.
type job struct{ intended time.Time }

// phase runs the load for d (and at most limit requests when positive)
// and returns the merged statistics.
func (r *runner) phase(ctx context.Context, name string, d time.Duration, limit int, seedV uint64) *stats {
	// Requests in flight (or, at a constant rate, already scheduled) when
	// the time is up may finish within one request timeout; then
	// everything stops.
	hard, hardCancel := context.WithTimeout(ctx, d+r.cfg.Timeout)
	defer hardCancel()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	workers := make([]*stats, r.cfg.Connections)
	var wg sync.WaitGroup
	var jobs chan job
	if r.cfg.Mode == ModeRate {
		jobs = make(chan job, r.cfg.Connections)
	}
	var lives []*liveStats
	for i := range workers {
		workers[i] = newStats()
		if r.cfg.Progress != nil {
			workers[i].live = &liveStats{}
			lives = append(lives, workers[i].live)
		}
		rng := rand.New(rand.NewPCG(seedV, uint64(i)+1))
		w := &worker{r: r, st: workers[i], rng: rng, client: r.clients[i],
			users:      rand.NewZipf(rng, r.cfg.ZipfS, 1, uint64(r.cfg.Users-1)),
			challenges: rand.NewZipf(rng, r.cfg.ZipfS, 1, uint64(r.cfg.Challenges-1)),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if jobs == nil {
				w.closedLoop(ctx, hard, limit)
			} else {
				w.serve(hard, jobs)
			}
		}()
	}
	reported := make(chan struct{})
	pctx, stopReporting := context.WithCancel(context.Background())
	if lives != nil {
		every := r.cfg.ProgressEvery
		if every <= 0 {
			every = time.Second
		}
		go func() {
			defer close(reported)
			report(pctx, name, every, lives, r.cfg.Progress)
		}()
	} else {
		close(reported)
	}
	var dropped int64
	if jobs != nil {
		dropped = r.schedule(ctx, hard, jobs, limit)
		close(jobs)
	}
	wg.Wait()
	stopReporting()
	<-reported
	total := newStats()
	for _, s := range workers {
		total.merge(s)
	}
	total.dropped += dropped
	return total
}

// schedule emits jobs at the configured rate until ctx ends or limit jobs
// were emitted. Intended times follow the schedule exactly, however late
// the emission: a blocked channel delays sending, not the clock. It
// returns the jobs that could not be handed over before the hard stop.
func (r *runner) schedule(ctx, hard context.Context, jobs chan<- job, limit int) int64 {
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	start := time.Now()
	var dropped int64
	for i := 0; limit <= 0 || i < limit; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if wait := time.Until(intended); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return dropped
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return dropped
		}
		select {
		case jobs <- job{intended}:
		case <-hard.Done():
			return dropped + 1
		}
	}
	return dropped
}

// worker sends requests and records them in its own stats (no sharing
// between workers; merged at the end).
type worker struct {
	r          *runner
	client     *http.Client
	st         *stats
	rng        *rand.Rand
	users      *rand.Zipf
	challenges *rand.Zipf
}

func (w *worker) closedLoop(ctx, hard context.Context, limit int) {
	for ctx.Err() == nil {
		if limit > 0 && w.r.sent.Add(1) > int64(limit) {
			return
		}
		w.do(hard, time.Now())
	}
}

func (w *worker) serve(hard context.Context, jobs <-chan job) {
	for j := range jobs {
		if hard.Err() != nil {
			w.st.dropped++
			continue
		}
		w.do(hard, j.intended)
	}
}

func (w *worker) user() int64      { return int64(w.users.Uint64()) + 1 }
func (w *worker) challenge() int64 { return int64(w.challenges.Uint64()) + 1 }

// do sends one request of a drawn endpoint; latency counts from intended.
func (w *worker) do(ctx context.Context, intended time.Time) {
	spec, err := w.next(ctx)
	if err != nil {
		w.st.endpoint(spec.endpoint).fail("setup")
		return
	}
	w.send(ctx, spec, intended)
}

// next draws the next request. A chat message needs the user's session,
// created (and recorded as chat_session) on first use.
func (w *worker) next(ctx context.Context) (requestSpec, error) {
	ep := w.r.picker.pick(w.rng)
	s := requestSpec{endpoint: ep, method: http.MethodGet}
	switch ep {
	case EpChallenges:
		s.path = "/api/challenges" + catalogueQuery(w.rng)
	case EpChallenge:
		s.path = "/api/challenges/" + strconv.FormatInt(w.challenge(), 10)
	case EpReputation:
		s.user = w.user()
		s.path = "/api/users/" + strconv.FormatInt(s.user, 10) + "/reputation"
	case EpMatches:
		s.user = w.user()
		s.path = "/api/users/" + strconv.FormatInt(s.user, 10) + "/matches"
	case EpLocationGet:
		s.user = w.user()
		s.path = "/api/users/" + strconv.FormatInt(s.user, 10) + "/location"
	case EpLocationPut:
		s.user = w.user()
		s.method = http.MethodPut
		s.path = "/api/users/" + strconv.FormatInt(s.user, 10) + "/location"
		lat, lon := w.r.home(s.user)
		// Within about a kilometre of home.
		s.body = jsonBody(map[string]float64{"lat": lat + (w.rng.Float64()-0.5)*0.02, "lon": lon + (w.rng.Float64()-0.5)*0.02})
	case EpComplete:
		s.user = w.user()
		s.method = http.MethodPost
		s.path = "/api/challenges/" + strconv.FormatInt(w.challenge(), 10) + "/complete"
	case EpChat:
		s.user = w.user()
		sid, err := w.session(ctx, s.user)
		if err != nil {
			return s, err
		}
		line := chatLines[w.rng.IntN(len(chatLines))]
		body := map[string]string{"text": line.text}
		if line.assessment {
			body["purpose"] = "assessment"
		}
		s.method = http.MethodPost
		s.path = "/api/chat/sessions/" + url.PathEscape(sid) + "/messages"
		s.body = jsonBody(body)
	}
	return s, nil
}

// home returns a user's seeded home coordinates.
func (r *runner) home(user int64) (lat, lon float64) {
	if v, ok := r.homes.Load(user); ok {
		h := v.([2]float64)
		return h[0], h[1]
	}
	r.genMu.Lock()
	rec := r.gen.User(user)
	r.genMu.Unlock()
	h := [2]float64{52.52, 13.405}
	if rec.HasLocation {
		h = [2]float64{rec.Location.Lat, rec.Location.Lon}
	}
	r.homes.Store(user, h)
	return h[0], h[1]
}

func (r *runner) token(user int64) (string, error) {
	if v, ok := r.tokens.Load(user); ok {
		return v.(string), nil
	}
	t, err := r.cfg.Tokens(user)
	if err != nil {
		return "", err
	}
	r.tokens.Store(user, t)
	return t, nil
}

// session returns the user's chat session: on first use, the user's
// newest (unless Config.NewChats), or a new one.
func (w *worker) session(ctx context.Context, user int64) (string, error) {
	if v, ok := w.r.sessions.Load(user); ok {
		return v.(string), nil
	}
	if !w.r.cfg.NewChats {
		list := requestSpec{endpoint: EpChatSession, method: http.MethodGet, path: "/api/chat/sessions?limit=1", user: user}
		body, ok := w.send(ctx, list, time.Now())
		if !ok {
			return "", errors.New("loadgen: could not list the user's chat sessions")
		}
		var sessions struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(body, &sessions); err != nil {
			return "", errors.New("loadgen: chat session list is not JSON")
		}
		if len(sessions.Items) > 0 && sessions.Items[0].ID != "" {
			v, _ := w.r.sessions.LoadOrStore(user, sessions.Items[0].ID)
			return v.(string), nil
		}
	}
	spec := requestSpec{endpoint: EpChatSession, method: http.MethodPost, path: "/api/chat/sessions",
		body: jsonBody(map[string]string{"title": "load test"}), user: user}
	body, ok := w.send(ctx, spec, time.Now())
	if !ok {
		return "", errors.New("loadgen: could not create a chat session")
	}
	var sess struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &sess); err != nil || sess.ID == "" {
		return "", errors.New("loadgen: chat session answer has no id")
	}
	v, _ := w.r.sessions.LoadOrStore(user, sess.ID)
	return v.(string), nil
}

// expected reports whether status is a success for the endpoint: 2xx,
// and 404 for the location (and so the matches) of a user who never set
// one: some seeded users have none.
func expected(endpoint string, status int) bool {
	return status/100 == 2 || ((endpoint == EpLocationGet || endpoint == EpMatches) && status == http.StatusNotFound)
}

// send performs spec and records it; it returns the body of a successful
// chat or session answer (which the caller reads), and whether the
// request succeeded.
func (w *worker) send(ctx context.Context, spec requestSpec, intended time.Time) ([]byte, bool) {
	es := w.st.endpoint(spec.endpoint)
	var body io.Reader
	if spec.body != nil {
		body = bytes.NewReader(spec.body)
	}
	req, err := http.NewRequestWithContext(ctx, spec.method, w.r.base+spec.path, body)
	if err != nil {
		es.fail("setup")
		return nil, false
	}
	if spec.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if spec.user != 0 {
		tok, err := w.r.token(spec.user)
		if err != nil {
			es.fail("token")
			return nil, false
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			es.fail("timeout")
		default:
			es.fail("transport")
		}
		return nil, false
	}
	keep := spec.endpoint == EpChat || spec.endpoint == EpChatSession
	var data []byte
	if keep {
		data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	elapsed := time.Since(intended)
	if err != nil {
		es.fail("transport")
		return nil, false
	}
	ok := expected(spec.endpoint, resp.StatusCode)
	es.done(elapsed, resp.StatusCode, ok, resp.Header.Get("X-Cache"))
	if ok && spec.endpoint == EpChat {
		w.st.chat.add(data)
	}
	return data, ok
}
