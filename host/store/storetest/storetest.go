// Package storetest is the contract suite every store.Store implementation
// passes, in the style of testing/fstest: an implementation's test calls
// Run with a fresh, migrated, empty store (the challenge catalogue
// loaded, no users). Subtests create their own users, so they share the
// store and may run in any order.
package storetest

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/seed"
)

// Run runs the contract suite against s.
func Run(t *testing.T, s store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"Users", testUsers},
		{"ChallengesCatalogue", testChallenges},
		{"ChallengeFilterValidation", testChallengeFilterValidation},
		{"CompleteAndReputation", testCompleteAndReputation},
		{"CompleteIsIdempotentUnderConcurrency", testCompleteConcurrent},
		{"Location", testLocation},
		{"Matches", testMatches},
		{"MatchesAcrossTheAntimeridianAndNearThePole", testMatchesEdges},
		{"ChatSessionsAndMessages", testChat},
		{"ChatSummary", testChatSummary},
		{"Ping", func(t *testing.T, s store.Store) {
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newUser(t *testing.T, s store.Store, name string, open bool) store.User {
	t.Helper()
	u, err := s.CreateUser(ctx(t), store.User{Name: name, City: "Testville", OpenToWingman: open})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var fe *store.FieldError
	if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("err = %v, want invalid %q", err, field)
	}
}

func testUsers(t *testing.T, s store.Store) {
	c := ctx(t)
	u := newUser(t, s, "Ada Test", true)
	if u.ID <= 0 || u.CreatedAt.IsZero() {
		t.Fatalf("CreateUser = %+v: want id and created_at set", u)
	}
	got, err := s.GetUser(c, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.Name != "Ada Test" || got.City != "Testville" || !got.OpenToWingman || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("GetUser = %+v, want %+v", got, u)
	}
	if _, err := s.CreateUser(c, store.User{ID: u.ID, Name: "dup"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(existing id) err = %v, want ErrConflict", err)
	}
	if _, err := s.GetUser(c, 1<<60); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser(unknown) err = %v, want ErrNotFound", err)
	}
	u2 := newUser(t, s, "Bo Test", false)
	if u2.ID == u.ID {
		t.Errorf("two users got id %d", u.ID)
	}
}

func testChallenges(t *testing.T, s store.Store) {
	c := ctx(t)
	var all []store.Challenge
	var after int64
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		p, err := s.ListChallenges(c, store.ChallengeFilter{After: after, Limit: 7})
		if err != nil {
			t.Fatalf("ListChallenges: %v", err)
		}
		if len(p.Items) > 7 {
			t.Fatalf("page of %d items, limit 7", len(p.Items))
		}
		all = append(all, p.Items...)
		if p.Next == 0 {
			break
		}
		if p.Next != p.Items[len(p.Items)-1].ID {
			t.Fatalf("Next = %d, want last id %d", p.Next, p.Items[len(p.Items)-1].ID)
		}
		after = p.Next
	}
	if len(all) != seed.NumChallenges {
		t.Fatalf("catalogue has %d challenges, want %d", len(all), seed.NumChallenges)
	}
	want := seed.Challenges()
	for i := range all {
		if all[i] != want[i] {
			t.Fatalf("challenge %d = %+v, want %+v", i, all[i], want[i])
		}
	}

	p, err := s.ListChallenges(c, store.ChallengeFilter{Category: "dating", Difficulty: "hard", Limit: 100})
	if err != nil {
		t.Fatalf("ListChallenges(filter): %v", err)
	}
	n := 0
	for _, ch := range want {
		if ch.Category == "dating" && ch.Difficulty == "hard" {
			n++
		}
	}
	if len(p.Items) != n || n == 0 || p.Next != 0 {
		t.Fatalf("filtered list has %d items (next %d), want %d", len(p.Items), p.Next, n)
	}
	for i, ch := range p.Items {
		if ch.Category != "dating" || ch.Difficulty != "hard" || (i > 0 && ch.ID <= p.Items[i-1].ID) {
			t.Fatalf("filtered item %d = %+v", i, ch)
		}
	}
	// The last page of an exactly divisible listing has Next == 0.
	p, err = s.ListChallenges(c, store.ChallengeFilter{Category: "dating", Difficulty: "hard", Limit: n})
	if err != nil || len(p.Items) != n || p.Next != 0 {
		t.Fatalf("exact page: %d items next %d err %v", len(p.Items), p.Next, err)
	}

	got, err := s.GetChallenge(c, 42)
	if err != nil || got != want[41] {
		t.Fatalf("GetChallenge(42) = %+v, %v; want %+v", got, err, want[41])
	}
	if _, err := s.GetChallenge(c, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetChallenge(9999) err = %v, want ErrNotFound", err)
	}
}

func testChallengeFilterValidation(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		name  string
		f     store.ChallengeFilter
		field string
	}{
		{"unknown category", store.ChallengeFilter{Category: "juggling", Limit: 10}, "category"},
		{"unknown difficulty", store.ChallengeFilter{Difficulty: "trivial", Limit: 10}, "difficulty"},
		{"zero limit", store.ChallengeFilter{Limit: 0}, "limit"},
		{"limit over 100", store.ChallengeFilter{Limit: 101}, "limit"},
		{"negative cursor", store.ChallengeFilter{After: -1, Limit: 10}, "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ListChallenges(ctx(t), tc.f)
			wantField(t, err, tc.field)
		})
	}
}

var day1 = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)

func testCompleteAndReputation(t *testing.T, s store.Store) {
	c := ctx(t)
	u := newUser(t, s, "Cy Test", false)
	rep, err := s.GetReputation(c, u.ID, 10)
	if err != nil {
		t.Fatalf("GetReputation(new user): %v", err)
	}
	if rep.Score != 0 || rep.Level != 1 || len(rep.Categories) != 0 || len(rep.Recent) != 0 {
		t.Fatalf("new user's reputation = %+v", rep)
	}
	cat := seed.Challenges()
	ch1, ch2 := cat[0], cat[7] // different categories
	comp, err := s.CompleteChallenge(c, u.ID, ch1.ID, day1)
	if err != nil {
		t.Fatalf("CompleteChallenge: %v", err)
	}
	if !comp.Created || comp.Points != ch1.Points || comp.Score != ch1.Points || comp.ID == 0 || !comp.CompletedAt.Equal(day1) {
		t.Fatalf("first completion = %+v", comp)
	}
	again, err := s.CompleteChallenge(c, u.ID, ch1.ID, day1.Add(3*time.Hour))
	if err != nil {
		t.Fatalf("repeat CompleteChallenge: %v", err)
	}
	if again.Created || again.ID != comp.ID || again.Score != ch1.Points || !again.CompletedAt.Equal(day1) {
		t.Fatalf("repeat on the same day = %+v, want the first completion, not created", again)
	}
	next, err := s.CompleteChallenge(c, u.ID, ch1.ID, day1.Add(24*time.Hour))
	if err != nil || !next.Created || next.Score != 2*ch1.Points {
		t.Fatalf("next-day completion = %+v, %v", next, err)
	}
	last, err := s.CompleteChallenge(c, u.ID, ch2.ID, day1.Add(48*time.Hour))
	if err != nil || !last.Created {
		t.Fatalf("third completion = %+v, %v", last, err)
	}
	total := 2*ch1.Points + ch2.Points
	if _, err := s.CompleteChallenge(c, u.ID, 9999, day1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown challenge err = %v, want ErrNotFound", err)
	}
	if _, err := s.CompleteChallenge(c, 1<<60, ch1.ID, day1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user err = %v, want ErrNotFound", err)
	}

	rep, err = s.GetReputation(c, u.ID, 2)
	if err != nil {
		t.Fatalf("GetReputation: %v", err)
	}
	if rep.UserID != u.ID || rep.Score != total || rep.Level != store.Level(total) {
		t.Errorf("reputation = %+v, want score %d", rep, total)
	}
	wantCats := map[string]store.CategoryScore{
		ch1.Category: {Category: ch1.Category, Score: 2 * ch1.Points, Completions: 2},
		ch2.Category: {Category: ch2.Category, Score: ch2.Points, Completions: 1},
	}
	if len(rep.Categories) != 2 {
		t.Fatalf("categories = %+v, want 2", rep.Categories)
	}
	for i, cs := range rep.Categories {
		if cs != wantCats[cs.Category] || (i > 0 && rep.Categories[i-1].Category >= cs.Category) {
			t.Errorf("category %d = %+v, want %+v (sorted by name)", i, cs, wantCats[cs.Category])
		}
	}
	if len(rep.Recent) != 2 || rep.Recent[0].ChallengeID != ch2.ID || rep.Recent[1].ChallengeID != ch1.ID ||
		!rep.Recent[0].At.Equal(day1.Add(48*time.Hour)) || rep.Recent[0].Title != ch2.Title || rep.Recent[0].Points != ch2.Points {
		t.Errorf("recent = %+v, want newest first, limited to 2", rep.Recent)
	}
	if _, err := s.GetReputation(c, 1<<60, 5); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetReputation(unknown) err = %v, want ErrNotFound", err)
	}
}

func testCompleteConcurrent(t *testing.T, s store.Store) {
	u := newUser(t, s, "Di Test", false)
	ch := seed.Challenges()[3]
	const n = 8
	var wg sync.WaitGroup
	results := make([]store.Completion, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.CompleteChallenge(context.Background(), u.ID, ch.ID, day1.Add(time.Duration(i)*time.Minute))
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		if results[i].ID != results[0].ID {
			t.Errorf("caller %d got completion %d, caller 0 got %d", i, results[i].ID, results[0].ID)
		}
	}
	if created != 1 {
		t.Fatalf("%d callers created the completion, want exactly 1", created)
	}
	rep, err := s.GetReputation(ctx(t), u.ID, 10)
	if err != nil || rep.Score != ch.Points || len(rep.Recent) != 1 {
		t.Fatalf("reputation after concurrent repeats = %+v, %v; want %d points once", rep, err, ch.Points)
	}
}

func testLocation(t *testing.T, s store.Store) {
	c := ctx(t)
	u := newUser(t, s, "Ed Test", true)
	if _, err := s.GetLocation(c, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetLocation before PUT err = %v, want ErrNotFound", err)
	}
	for _, tc := range []struct {
		name     string
		lat, lon float64
		field    string
	}{
		{"lat too high", 90.5, 0, "lat"},
		{"lat too low", -91, 0, "lat"},
		{"lat NaN", math.NaN(), 0, "lat"},
		{"lon too high", 0, 180.01, "lon"},
		{"lon NaN", 10, math.NaN(), "lon"},
		{"lon infinite", 10, math.Inf(-1), "lon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutLocation(ctx(t), store.Location{UserID: u.ID, Lat: tc.lat, Lon: tc.lon})
			wantField(t, err, tc.field)
		})
	}
	put, err := s.PutLocation(c, store.Location{UserID: u.ID, Lat: 51.5, Lon: -0.12})
	if err != nil {
		t.Fatalf("PutLocation: %v", err)
	}
	if put.UserID != u.ID || put.Lat != 51.5 || put.Lon != -0.12 || put.UpdatedAt.IsZero() {
		t.Fatalf("PutLocation = %+v", put)
	}
	got, err := s.GetLocation(c, u.ID)
	if err != nil || got.Lat != put.Lat || got.Lon != put.Lon || !got.UpdatedAt.Equal(put.UpdatedAt) {
		t.Fatalf("GetLocation = %+v, %v; want %+v", got, err, put)
	}
	if _, err := s.PutLocation(c, store.Location{UserID: 1 << 60, Lat: 1, Lon: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutLocation(unknown user) err = %v, want ErrNotFound", err)
	}
	// Edges are valid.
	if _, err := s.PutLocation(c, store.Location{UserID: u.ID, Lat: -90, Lon: 180}); err != nil {
		t.Fatalf("PutLocation(-90, 180): %v", err)
	}
}

// offset returns the point dKM north of (lat, lon).
func north(lat, lon, dKM float64) (float64, float64) {
	return lat + dKM/(store.EarthRadiusKM*math.Pi/180), lon
}

func testMatches(t *testing.T, s store.Store) {
	c := ctx(t)
	// A patch of the South Pacific nobody else in the suite uses.
	const lat0, lon0 = -48.5, -123.4
	place := func(name string, open bool, dKM float64) store.User {
		t.Helper()
		u := newUser(t, s, name, open)
		la, lo := north(lat0, lon0, dKM)
		if _, err := s.PutLocation(c, store.Location{UserID: u.ID, Lat: la, Lon: lo}); err != nil {
			t.Fatalf("PutLocation(%s): %v", name, err)
		}
		return u
	}
	me := place("Me", true, 0)
	near := place("Near", true, 1)        // 1 km, but a big reputation gap
	peer := place("Peer", true, 3)        // 3 km, same reputation
	far := place("Far", true, 8)          // 8 km, same reputation as "near"
	closed := place("Closed", false, 2)   // not open to being a wingman
	outside := place("Outside", true, 12) // beyond the radius
	_ = closed
	_ = outside
	// Make me and peer experts (≥ 1000 points); near and far stay at 0.
	for _, ch := range seed.Challenges() {
		if ch.Difficulty != "expert" {
			continue
		}
		for _, u := range []store.User{me, peer} {
			if _, err := s.CompleteChallenge(c, u.ID, ch.ID, day1); err != nil {
				t.Fatalf("CompleteChallenge: %v", err)
			}
		}
	}
	got, err := s.FindMatches(c, store.MatchQuery{UserID: me.ID, RadiusKM: 10, Limit: 10})
	if err != nil {
		t.Fatalf("FindMatches: %v", err)
	}
	// peer: 0.7·0.3 + 0 = 0.21; near: 0.7·0.1 + 0.3 = 0.37; far: 0.56 + 0.3 = 0.86.
	wantIDs := []int64{peer.ID, near.ID, far.ID}
	if len(got) != len(wantIDs) {
		t.Fatalf("FindMatches = %+v, want users %v", got, wantIDs)
	}
	for i, m := range got {
		if m.UserID != wantIDs[i] {
			t.Fatalf("match %d = user %d, want %d (all: %+v)", i, m.UserID, wantIDs[i], got)
		}
	}
	if math.Abs(got[0].DistanceKM-3) > 0.01 || math.Abs(got[1].DistanceKM-1) > 0.01 || got[0].Name != "Peer" ||
		got[0].Score < 1000 || got[0].Level != store.Level(got[0].Score) || math.Abs(got[0].Rank-0.21) > 0.01 {
		t.Errorf("match details = %+v", got)
	}
	got, err = s.FindMatches(c, store.MatchQuery{UserID: me.ID, RadiusKM: 10, Limit: 1})
	if err != nil || len(got) != 1 || got[0].UserID != peer.ID {
		t.Errorf("FindMatches(limit 1) = %+v, %v", got, err)
	}
	got, err = s.FindMatches(c, store.MatchQuery{UserID: me.ID, RadiusKM: 0.5, Limit: 10})
	if err != nil || len(got) != 0 {
		t.Errorf("FindMatches(radius 0.5) = %+v, %v; want none", got, err)
	}
	lonely := newUser(t, s, "No location", true)
	if _, err := s.FindMatches(c, store.MatchQuery{UserID: lonely.ID, RadiusKM: 10, Limit: 10}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FindMatches without a location err = %v, want ErrNotFound", err)
	}
	_, err = s.FindMatches(c, store.MatchQuery{UserID: me.ID, RadiusKM: 0, Limit: 10})
	wantField(t, err, "radius_km")
	_, err = s.FindMatches(c, store.MatchQuery{UserID: me.ID, RadiusKM: 10, Limit: 51})
	wantField(t, err, "limit")
}

func testChat(t *testing.T, s store.Store) {
	c := ctx(t)
	u := newUser(t, s, "Fay Test", false)
	if _, err := s.CreateChatSession(c, 1<<60, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CreateChatSession(unknown user) err = %v, want ErrNotFound", err)
	}
	sess, err := s.CreateChatSession(c, u.ID, "First date nerves")
	if err != nil {
		t.Fatalf("CreateChatSession: %v", err)
	}
	if sess.ID == "" || sess.UserID != u.ID || sess.Title != "First date nerves" || sess.CreatedAt.IsZero() {
		t.Fatalf("session = %+v", sess)
	}
	got, err := s.GetChatSession(c, sess.ID)
	if err != nil || got != sess {
		t.Fatalf("GetChatSession = %+v, %v; want %+v", got, err, sess)
	}
	if _, err := s.GetChatSession(c, "no-such-session"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetChatSession(unknown) err = %v", err)
	}
	other, err := s.CreateChatSession(c, u.ID, "other")
	if err != nil || other.ID == sess.ID {
		t.Fatalf("second session = %+v, %v", other, err)
	}
	list, err := s.ListChatSessions(c, u.ID, 10)
	if err != nil || len(list) != 2 || !slices.ContainsFunc(list, func(x store.ChatSession) bool { return x == sess }) ||
		!slices.ContainsFunc(list, func(x store.ChatSession) bool { return x == other }) || list[0].CreatedAt.Before(list[1].CreatedAt) {
		t.Fatalf("ListChatSessions = %+v, %v; want both sessions, newest first", list, err)
	}
	if one, err := s.ListChatSessions(c, u.ID, 1); err != nil || len(one) != 1 || one[0] != list[0] {
		t.Fatalf("ListChatSessions(limit 1) = %+v, %v; want [%+v]", one, err, list[0])
	}
	if none, err := s.ListChatSessions(c, 1<<60, 10); err != nil || len(none) != 0 {
		t.Fatalf("ListChatSessions(unknown user) = %+v, %v; want none", none, err)
	}

	full := store.ChatMessage{SessionID: sess.ID, Role: store.RoleAssistant, Text: "Breathe, then say hi. ✨", Tokens: 9,
		Tier: "standard", Provider: "simulated", Model: "sim-sonnet", InputTokens: 120, OutputTokens: 9,
		CacheReadTokens: 100, CacheWriteTokens: 20, CostUSD: 0.000123, BaselineCostUSD: 0.0042,
		ContextTokens: 130, BaselineContextTokens: 900, LatencyMS: 42, Status: "ok"}
	var ids []int64
	for i, m := range []store.ChatMessage{
		{SessionID: sess.ID, Role: store.RoleSystem, Text: "You are a coach.", Tokens: 5},
		{SessionID: sess.ID, Role: store.RoleUser, Text: "I am nervous.", Tokens: 4},
		full,
		{SessionID: sess.ID, Role: store.RoleUser, Text: "Thanks!", Tokens: 2},
	} {
		if err := s.AppendChatMessage(c, &m); err != nil {
			t.Fatalf("AppendChatMessage %d: %v", i, err)
		}
		if m.ID == 0 || m.CreatedAt.IsZero() || (len(ids) > 0 && m.ID <= ids[len(ids)-1]) {
			t.Fatalf("message %d: id %d created %v", i, m.ID, m.CreatedAt)
		}
		ids = append(ids, m.ID)
		if i == 2 {
			full.ID, full.CreatedAt = m.ID, m.CreatedAt
		}
	}
	// A message in another session does not show up.
	if err := s.AppendChatMessage(c, &store.ChatMessage{SessionID: other.ID, Role: store.RoleUser, Text: "elsewhere"}); err != nil {
		t.Fatalf("AppendChatMessage(other): %v", err)
	}
	msgs, err := s.ListChatMessages(c, sess.ID, 0, 100)
	if err != nil || len(msgs) != 4 {
		t.Fatalf("ListChatMessages = %d msgs, %v; want 4", len(msgs), err)
	}
	for i, m := range msgs {
		if m.ID != ids[i] || m.SessionID != sess.ID {
			t.Fatalf("message %d = %+v, want id %d", i, m, ids[i])
		}
	}
	if msgs[2] != full {
		t.Errorf("round trip:\n got %+v\nwant %+v", msgs[2], full)
	}
	page, err := s.ListChatMessages(c, sess.ID, ids[0], 2)
	if err != nil || len(page) != 2 || page[0].ID != ids[1] || page[1].ID != ids[2] {
		t.Fatalf("ListChatMessages(after %d, 2) = %+v, %v", ids[0], page, err)
	}
	if _, err := s.ListChatMessages(c, sess.ID, 0, 0); err == nil {
		t.Errorf("ListChatMessages(limit 0) succeeded")
	}
	if _, err := s.ListChatMessages(c, "no-such-session", 0, 10); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ListChatMessages(unknown) err = %v, want ErrNotFound", err)
	}
	err = s.AppendChatMessage(c, &store.ChatMessage{SessionID: sess.ID, Role: "wizard", Text: "x"})
	wantField(t, err, "role")
	if err := s.AppendChatMessage(c, &store.ChatMessage{SessionID: "no-such-session", Role: store.RoleUser}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AppendChatMessage(unknown session) err = %v, want ErrNotFound", err)
	}
}

func testChatSummary(t *testing.T, s store.Store) {
	c := ctx(t)
	u := newUser(t, s, "Gus Test", false)
	sess, err := s.CreateChatSession(c, u.ID, "")
	if err != nil {
		t.Fatalf("CreateChatSession: %v", err)
	}
	if _, err := s.GetChatSummary(c, sess.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetChatSummary before Put err = %v, want ErrNotFound", err)
	}
	for _, want := range []store.ChatSummary{
		{SessionID: sess.ID, UpToMessageID: 10, Text: "They fear rejection.", Tokens: 5},
		{SessionID: sess.ID, UpToMessageID: 24, Text: "They fear rejection; tried a café opener.", Tokens: 11},
	} {
		if err := s.PutChatSummary(c, want); err != nil {
			t.Fatalf("PutChatSummary: %v", err)
		}
		got, err := s.GetChatSummary(c, sess.ID)
		if err != nil {
			t.Fatalf("GetChatSummary: %v", err)
		}
		if got.SessionID != want.SessionID || got.UpToMessageID != want.UpToMessageID || got.Text != want.Text ||
			got.Tokens != want.Tokens || got.UpdatedAt.IsZero() {
			t.Fatalf("GetChatSummary = %+v, want %+v", got, want)
		}
	}
	if err := s.PutChatSummary(c, store.ChatSummary{SessionID: "no-such-session", Text: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutChatSummary(unknown session) err = %v, want ErrNotFound", err)
	}
}

func testMatchesEdges(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, tc := range []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
	}{
		{"antimeridian", -16.5, 179.99, -16.5, -179.99}, // ~2.1 km apart (Fiji)
		{"north pole", 89.995, 0, 89.995, 180},          // ~1.1 km apart across the pole
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newUser(t, s, tc.name+" A", true)
			b := newUser(t, s, tc.name+" B", true)
			for _, l := range []store.Location{{UserID: a.ID, Lat: tc.lat1, Lon: tc.lon1}, {UserID: b.ID, Lat: tc.lat2, Lon: tc.lon2}} {
				if _, err := s.PutLocation(c, l); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.FindMatches(c, store.MatchQuery{UserID: a.ID, RadiusKM: 5, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].UserID != b.ID || got[0].DistanceKM > 3 {
				t.Fatalf("FindMatches = %+v, want only user %d within 3 km", got, b.ID)
			}
		})
	}
}
