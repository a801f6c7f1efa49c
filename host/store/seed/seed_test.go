package seed

import (
	"math"
	"reflect"
	"testing"

	"github.com/wingman-app/wingate/host/store"
)

func TestChallengesCoverTheCatalogue(t *testing.T) {
	cs := Challenges()
	if len(cs) != NumChallenges {
		t.Fatalf("%d challenges, want %d", len(cs), NumChallenges)
	}
	slugs := map[string]bool{}
	cells := map[[2]string]int{}
	for i, c := range cs {
		if c.ID != int64(i+1) || slugs[c.Slug] || c.Title == "" || c.Points <= 0 ||
			!store.ValidCategory(c.Category) || !store.ValidDifficulty(c.Difficulty) {
			t.Fatalf("challenge %d = %+v", i, c)
		}
		slugs[c.Slug] = true
		cells[[2]string{c.Category, c.Difficulty}]++
	}
	if len(cells) != len(store.Categories)*len(store.Difficulties) {
		t.Fatalf("only %d category×difficulty cells are covered", len(cells))
	}
	if !reflect.DeepEqual(cs, Challenges()) {
		t.Fatal("the catalogue is not deterministic")
	}
}

func TestUsersAreDeterministicAndPlausible(t *testing.T) {
	g1, g2 := New(DefaultSeed), New(DefaultSeed)
	if !reflect.DeepEqual(g1.User(123), g2.User(123)) {
		t.Fatal("same seed and id gave different users")
	}
	if reflect.DeepEqual(g1.User(123).User, New(DefaultSeed+1).User(123).User) {
		t.Fatal("another seed gave the same user")
	}
	centres := map[string]City{}
	for _, c := range Cities {
		centres[c.Name] = c
	}
	scores := map[int]bool{}
	open, located := 0, 0
	const n = 3000
	for id := int64(1); id <= n; id++ {
		r := g1.User(id)
		c, ok := centres[r.User.City]
		if !ok || r.User.Name == "" || r.User.ID != id {
			t.Fatalf("user %d = %+v", id, r.User)
		}
		if r.HasLocation {
			located++
			dLat := (r.Location.Lat - c.Lat) * 111.32
			dLon := (r.Location.Lon - c.Lon) * 111.32 * math.Cos(c.Lat*math.Pi/180)
			if d := math.Hypot(dLat, dLon); d > 6*c.SpreadKM {
				t.Fatalf("user %d lives %.0f km from %s", id, d, c.Name)
			}
		}
		if r.User.OpenToWingman {
			open++
		}
		sum, seen := 0, map[int64]bool{}
		for _, cp := range r.Completions {
			if seen[cp.ChallengeID] || !cp.At.Before(Epoch) {
				t.Fatalf("user %d: bad completion %+v", id, cp)
			}
			seen[cp.ChallengeID] = true
			sum += cp.Points
		}
		cat := 0
		for _, cs := range r.ByCategory {
			cat += cs.Score
		}
		if sum != r.Score || cat != r.Score {
			t.Fatalf("user %d: score %d, completions %d, categories %d", id, r.Score, sum, cat)
		}
		scores[r.Score] = true
	}
	if located < n*85/100 || open < n*35/100 || open > n*55/100 || len(scores) < 300 {
		t.Fatalf("located %d, open %d, distinct scores %d of %d users", located, open, len(scores), n)
	}
}
