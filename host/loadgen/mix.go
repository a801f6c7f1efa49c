package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/wingman-app/wingate/host/store"
)

// Endpoint names, as used in the mix, the report and the targets file.
const (
	EpChallenges  = "challenges"   // GET /api/challenges (catalogue page, public)
	EpChallenge   = "challenge"    // GET /api/challenges/:id (public)
	EpReputation  = "reputation"   // GET /api/users/:id/reputation
	EpMatches     = "matches"      // GET /api/users/:id/matches
	EpLocationGet = "location_get" // GET /api/users/:id/location
	EpLocationPut = "location_put" // PUT /api/users/:id/location
	EpComplete    = "complete"     // POST /api/challenges/:id/complete
	EpChat        = "chat"         // POST /api/chat/sessions/:id/messages
	EpChatSession = "chat_session" // GET or POST /api/chat/sessions (finding or opening a chatting user's session, once per user)
)

// DefaultMix is a read-heavy app mix, nine reads to one write: mostly
// the catalogue and per-user reads, some location updates and challenge
// completions, a few chat messages.
var DefaultMix = Mix{
	EpChallenges:  34,
	EpChallenge:   12,
	EpReputation:  22,
	EpMatches:     14,
	EpLocationGet: 8,
	EpLocationPut: 4,
	EpComplete:    3,
	EpChat:        3,
}

// Mix weights the endpoints; a request picks one with probability
// weight / sum of weights.
type Mix map[string]float64

// ParseMix parses "name=weight,name=weight".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("loadgen: mix %q: want name=weight", part)
		}
		if !validEndpoint(name) || name == EpChatSession {
			return nil, fmt.Errorf("loadgen: mix: unknown endpoint %q (want one of %s)", name, strings.Join(mixable(), ", "))
		}
		f, err := strconv.ParseFloat(w, 64)
		if err != nil || f < 0 {
			return nil, fmt.Errorf("loadgen: mix: %s weight %q: want a number >= 0", name, w)
		}
		m[name] = f
	}
	return m, m.validate()
}

func mixable() []string {
	out := make([]string, 0, len(DefaultMix))
	for k := range DefaultMix {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func validEndpoint(name string) bool {
	_, ok := DefaultMix[name]
	return ok || name == EpChatSession
}

func (m Mix) validate() error {
	total := 0.0
	for name, w := range m {
		if !validEndpoint(name) || name == EpChatSession {
			return fmt.Errorf("loadgen: mix: unknown endpoint %q", name)
		}
		total += w
	}
	if total <= 0 {
		return fmt.Errorf("loadgen: mix: weights sum to zero")
	}
	return nil
}

// picker draws endpoints from a mix.
type picker struct {
	names []string
	cum   []float64
}

func newPicker(m Mix) picker {
	var p picker
	names := make([]string, 0, len(m))
	for n, w := range m {
		if w > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names) // deterministic for a seed
	total := 0.0
	for _, n := range names {
		total += m[n]
		p.names = append(p.names, n)
		p.cum = append(p.cum, total)
	}
	for i := range p.cum {
		p.cum[i] /= total
	}
	return p
}

func (p picker) pick(r *rand.Rand) string {
	x := r.Float64()
	i := sort.SearchFloat64s(p.cum, x)
	if i >= len(p.names) {
		i = len(p.names) - 1
	}
	return p.names[i]
}

// chatLines are user messages from small talk to assessment requests, so
// that the route policy sees every tier.
var chatLines = []struct {
	text       string
	assessment bool
}{
	{"hey!", false},
	{"thanks, that helps", false},
	{"good morning :)", false},
	{"I did the coffee shop challenge today, the barista smiled back", false},
	{"How do I start a conversation with a stranger at a party without it feeling forced?", false},
	{"I freeze when someone I find attractive looks at me. What can I practise this week to get more comfortable with eye contact and a first hello?", false},
	{"My friend says I come across as cold in groups. Can you help me understand why that might be and give me three concrete things to try at dinner on Friday?", false},
	{"Please assess my progress over the last month: I completed five conversation challenges, skipped the public speaking ones, and felt anxious before each. What should my next month look like?", true},
	{"Give me an honest assessment of how my confidence has changed since I started, based on our conversations, and what is holding me back most.", true},
}

// requestSpec is one request to send.
type requestSpec struct {
	endpoint string
	method   string
	path     string
	body     []byte
	user     int64 // 0: anonymous
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// catalogueQuery draws a catalogue page: mostly the first page, often
// filtered, sometimes deeper.
func catalogueQuery(r *rand.Rand) string {
	q := []string{}
	// Half the pages are unfiltered, the rest filter by category and
	// sometimes difficulty: 1 + 6 + 24 distinct pages (x2 for limit).
	if r.IntN(2) == 0 {
		q = append(q, "category="+store.Categories[r.IntN(len(store.Categories))])
		if r.IntN(2) == 0 {
			q = append(q, "difficulty="+store.Difficulties[r.IntN(len(store.Difficulties))])
		}
	}
	if r.IntN(10) == 0 {
		q = append(q, "limit=50")
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + strings.Join(q, "&")
}
