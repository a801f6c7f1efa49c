// Package memstore is the in-process implementation of store.Store. It
// serves the first run when no database is configured (see Demo) and
// behaves like pgstore under the shared contract suite. Data lives only
// as long as the process.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/seed"
)

var (
	_ store.Store       = (*Store)(nil)
	_ store.PoolStatser = (*Store)(nil)
)

// Store keeps everything in maps behind one RWMutex. It is safe for
// concurrent use.
type Store struct {
	mu          sync.RWMutex
	now         func() time.Time
	users       map[int64]store.User
	nextUser    int64
	challenges  []store.Challenge // sorted by ID
	challengeBy map[int64]int
	locations   map[int64]store.Location
	completions map[int64][]store.Completion // by user, ascending time
	done        map[completionKey]store.Completion
	nextComp    int64
	score       map[int64]int
	byCategory  map[int64]map[string]store.CategoryScore
	sessions    map[string]store.ChatSession
	messages    map[string][]store.ChatMessage
	nextMsg     int64
	summaries   map[string]store.ChatSummary
}

type completionKey struct {
	user, challenge int64
	day             string
}

// New returns an empty store with the challenge catalogue loaded (the
// catalogue is reference data, present in every fresh database too).
func New() *Store {
	s := &Store{
		now:         time.Now,
		users:       map[int64]store.User{},
		challengeBy: map[int64]int{},
		locations:   map[int64]store.Location{},
		completions: map[int64][]store.Completion{},
		done:        map[completionKey]store.Completion{},
		score:       map[int64]int{},
		byCategory:  map[int64]map[string]store.CategoryScore{},
		sessions:    map[string]store.ChatSession{},
		messages:    map[string][]store.ChatMessage{},
		summaries:   map[string]store.ChatSummary{},
	}
	for i, c := range seed.Challenges() {
		s.challenges = append(s.challenges, c)
		s.challengeBy[c.ID] = i
	}
	return s
}

// Demo returns a store filled with n generated users (seed.DefaultSeed).
func Demo(n int) *Store {
	s := New()
	g := seed.New(seed.DefaultSeed)
	for id := int64(1); id <= int64(n); id++ {
		s.load(g.User(id))
	}
	return s
}

func (s *Store) load(r seed.UserRecord) {
	s.users[r.User.ID] = r.User
	s.nextUser = max(s.nextUser, r.User.ID)
	if r.HasLocation {
		s.locations[r.User.ID] = r.Location
	}
	comps := make([]store.Completion, 0, len(r.Completions))
	for _, c := range r.Completions {
		s.nextComp++
		comp := store.Completion{ID: s.nextComp, UserID: r.User.ID, ChallengeID: c.ChallengeID, Points: c.Points, CompletedAt: c.At.UTC(), Created: true}
		comps = append(comps, comp)
		s.done[completionKey{r.User.ID, c.ChallengeID, dayOf(c.At)}] = comp
	}
	slices.SortFunc(comps, func(a, b store.Completion) int {
		return cmp.Or(a.CompletedAt.Compare(b.CompletedAt), cmp.Compare(a.ID, b.ID))
	})
	s.completions[r.User.ID] = comps
	s.score[r.User.ID] = r.Score
	bc := map[string]store.CategoryScore{}
	for k, v := range r.ByCategory {
		bc[k] = v
	}
	s.byCategory[r.User.ID] = bc
}

func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Ping always succeeds.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// Close is a no-op.
func (s *Store) Close() {}

// PoolStats reports an idealised pool: memory never waits.
func (s *Store) PoolStats() store.PoolStats {
	return store.PoolStats{Max: 1, Idle: 1, Total: 1, Reachable: true, Health: 100}
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if u.ID < 0 {
		return store.User{}, store.Invalid("id", "must not be negative")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID == 0 {
		s.nextUser++
		u.ID = s.nextUser
	} else if _, ok := s.users[u.ID]; ok {
		return store.User{}, fmt.Errorf("memstore: user %d: %w", u.ID, store.ErrConflict)
	}
	s.nextUser = max(s.nextUser, u.ID)
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.now()
	}
	u.CreatedAt = u.CreatedAt.UTC().Truncate(time.Microsecond)
	s.users[u.ID] = u
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, id int64) (store.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, fmt.Errorf("memstore: user %d: %w", id, store.ErrNotFound)
	}
	return u, nil
}

// ListChallenges implements store.Store.
func (s *Store) ListChallenges(ctx context.Context, f store.ChallengeFilter) (store.ChallengePage, error) {
	if err := f.Validate(); err != nil {
		return store.ChallengePage{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	start, _ := slices.BinarySearchFunc(s.challenges, f.After+1, func(c store.Challenge, id int64) int { return cmp.Compare(c.ID, id) })
	var p store.ChallengePage
	for _, c := range s.challenges[start:] {
		if (f.Category != "" && c.Category != f.Category) || (f.Difficulty != "" && c.Difficulty != f.Difficulty) {
			continue
		}
		if len(p.Items) == f.Limit {
			p.Next = p.Items[len(p.Items)-1].ID
			break
		}
		p.Items = append(p.Items, c)
	}
	return p, nil
}

// GetChallenge implements store.Store.
func (s *Store) GetChallenge(ctx context.Context, id int64) (store.Challenge, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.challengeBy[id]
	if !ok {
		return store.Challenge{}, fmt.Errorf("memstore: challenge %d: %w", id, store.ErrNotFound)
	}
	return s.challenges[i], nil
}

// CompleteChallenge implements store.Store.
func (s *Store) CompleteChallenge(ctx context.Context, userID, challengeID int64, at time.Time) (store.Completion, error) {
	if at.IsZero() {
		at = s.now()
	}
	at = at.UTC().Truncate(time.Microsecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[userID]; !ok {
		return store.Completion{}, fmt.Errorf("memstore: user %d: %w", userID, store.ErrNotFound)
	}
	ci, ok := s.challengeBy[challengeID]
	if !ok {
		return store.Completion{}, fmt.Errorf("memstore: challenge %d: %w", challengeID, store.ErrNotFound)
	}
	key := completionKey{userID, challengeID, dayOf(at)}
	if prev, ok := s.done[key]; ok {
		prev.Created = false
		prev.Score = s.score[userID]
		return prev, nil
	}
	ch := s.challenges[ci]
	s.nextComp++
	comp := store.Completion{ID: s.nextComp, UserID: userID, ChallengeID: challengeID, Points: ch.Points, CompletedAt: at, Created: true}
	s.done[key] = comp
	list := append(s.completions[userID], comp)
	slices.SortStableFunc(list, func(a, b store.Completion) int {
		return cmp.Or(a.CompletedAt.Compare(b.CompletedAt), cmp.Compare(a.ID, b.ID))
	})
	s.completions[userID] = list
	s.score[userID] += ch.Points
	bc := s.byCategory[userID]
	if bc == nil {
		bc = map[string]store.CategoryScore{}
		s.byCategory[userID] = bc
	}
	cs := bc[ch.Category]
	cs.Category = ch.Category
	cs.Score += ch.Points
	cs.Completions++
	bc[ch.Category] = cs
	comp.Score = s.score[userID]
	return comp, nil
}

// GetReputation implements store.Store.
func (s *Store) GetReputation(ctx context.Context, userID int64, recent int) (store.Reputation, error) {
	if recent < 0 || recent > store.MaxPageSize {
		return store.Reputation{}, store.Invalid("recent", "must be between 0 and 100")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.users[userID]; !ok {
		return store.Reputation{}, fmt.Errorf("memstore: user %d: %w", userID, store.ErrNotFound)
	}
	rep := store.Reputation{UserID: userID, Score: s.score[userID], Categories: []store.CategoryScore{}, Recent: []store.ReputationEvent{}}
	rep.Level = store.Level(rep.Score)
	for _, cs := range s.byCategory[userID] {
		if cs.Score != 0 {
			rep.Categories = append(rep.Categories, cs)
		}
	}
	slices.SortFunc(rep.Categories, func(a, b store.CategoryScore) int { return cmp.Compare(a.Category, b.Category) })
	list := s.completions[userID]
	for i := len(list) - 1; i >= 0 && len(rep.Recent) < recent; i-- {
		c := list[i]
		ch := s.challenges[s.challengeBy[c.ChallengeID]]
		rep.Recent = append(rep.Recent, store.ReputationEvent{ChallengeID: c.ChallengeID, Title: ch.Title, Category: ch.Category, Points: c.Points, At: c.CompletedAt})
	}
	return rep, nil
}

// GetLocation implements store.Store.
func (s *Store) GetLocation(ctx context.Context, userID int64) (store.Location, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.locations[userID]
	if !ok {
		return store.Location{}, fmt.Errorf("memstore: location of user %d: %w", userID, store.ErrNotFound)
	}
	return l, nil
}

// PutLocation implements store.Store.
func (s *Store) PutLocation(ctx context.Context, loc store.Location) (store.Location, error) {
	if err := loc.Validate(); err != nil {
		return store.Location{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[loc.UserID]; !ok {
		return store.Location{}, fmt.Errorf("memstore: user %d: %w", loc.UserID, store.ErrNotFound)
	}
	loc.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	s.locations[loc.UserID] = loc
	return loc, nil
}

// FindMatches implements store.Store by a scan of every location.
func (s *Store) FindMatches(ctx context.Context, q store.MatchQuery) ([]store.Match, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	me, ok := s.locations[q.UserID]
	if !ok {
		return nil, fmt.Errorf("memstore: location of user %d: %w", q.UserID, store.ErrNotFound)
	}
	myScore := s.score[q.UserID]
	out := []store.Match{}
	for id, l := range s.locations {
		u := s.users[id]
		if id == q.UserID || !u.OpenToWingman {
			continue
		}
		d := Haversine(me.Lat, me.Lon, l.Lat, l.Lon)
		if d > q.RadiusKM {
			continue
		}
		sc := s.score[id]
		out = append(out, store.Match{UserID: id, Name: u.Name, City: u.City, DistanceKM: d, Score: sc,
			Level: store.Level(sc), Rank: store.MatchRank(d, q.RadiusKM, myScore, sc)})
	}
	slices.SortFunc(out, func(a, b store.Match) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), cmp.Compare(a.UserID, b.UserID))
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Haversine returns the great-circle distance in km.
func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * store.EarthRadiusKM * math.Asin(math.Min(1, math.Sqrt(a)))
}

// CreateChatSession implements store.ChatStore.
func (s *Store) CreateChatSession(ctx context.Context, userID int64, title string) (store.ChatSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[userID]; !ok {
		return store.ChatSession{}, fmt.Errorf("memstore: user %d: %w", userID, store.ErrNotFound)
	}
	cs := store.ChatSession{ID: store.NewSessionID(), UserID: userID, Title: title, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	s.sessions[cs.ID] = cs
	return cs, nil
}

// GetChatSession implements store.ChatStore.
func (s *Store) GetChatSession(ctx context.Context, id string) (store.ChatSession, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cs, ok := s.sessions[id]
	if !ok {
		return store.ChatSession{}, fmt.Errorf("memstore: chat session %q: %w", id, store.ErrNotFound)
	}
	return cs, nil
}

// ListChatSessions implements store.ChatStore.
func (s *Store) ListChatSessions(ctx context.Context, userID int64, limit int) ([]store.ChatSession, error) {
	s.mu.RLock()
	var out []store.ChatSession
	for _, cs := range s.sessions {
		if cs.UserID == userID {
			out = append(out, cs)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.ChatSession) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out, nil
}

// AppendChatMessage implements store.ChatStore.
func (s *Store) AppendChatMessage(ctx context.Context, m *store.ChatMessage) error {
	if !store.ValidRole(m.Role) {
		return store.Invalid("role", "must be user, assistant or system")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[m.SessionID]; !ok {
		return fmt.Errorf("memstore: chat session %q: %w", m.SessionID, store.ErrNotFound)
	}
	s.nextMsg++
	m.ID = s.nextMsg
	m.CreatedAt = s.now().UTC().Truncate(time.Microsecond)
	s.messages[m.SessionID] = append(s.messages[m.SessionID], *m)
	return nil
}

// ListChatMessages implements store.ChatStore.
func (s *Store) ListChatMessages(ctx context.Context, sessionID string, afterID int64, limit int) ([]store.ChatMessage, error) {
	if limit < 1 || limit > store.MaxChatPage {
		return nil, store.Invalid("limit", "must be between 1 and 1000")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.sessions[sessionID]; !ok {
		return nil, fmt.Errorf("memstore: chat session %q: %w", sessionID, store.ErrNotFound)
	}
	msgs := s.messages[sessionID]
	i, _ := slices.BinarySearchFunc(msgs, afterID+1, func(m store.ChatMessage, id int64) int { return cmp.Compare(m.ID, id) })
	out := []store.ChatMessage{}
	for ; i < len(msgs) && len(out) < limit; i++ {
		out = append(out, msgs[i])
	}
	return out, nil
}

// GetChatSummary implements store.ChatStore.
func (s *Store) GetChatSummary(ctx context.Context, sessionID string) (store.ChatSummary, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sum, ok := s.summaries[sessionID]
	if !ok {
		return store.ChatSummary{}, fmt.Errorf("memstore: summary of chat session %q: %w", sessionID, store.ErrNotFound)
	}
	return sum, nil
}

// PutChatSummary implements store.ChatStore.
func (s *Store) PutChatSummary(ctx context.Context, sum store.ChatSummary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sum.SessionID]; !ok {
		return fmt.Errorf("memstore: chat session %q: %w", sum.SessionID, store.ErrNotFound)
	}
	sum.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	s.summaries[sum.SessionID] = sum
	return nil
}
