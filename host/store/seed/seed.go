// Package seed generates Wingman's deterministic demo and benchmark data:
// a catalogue of 200 challenges and any number of users living around
// real cities, with completion histories that give them varied
// reputations. The same (seed, n) always yields the same data, and any
// user can be generated on its own (each user has its own random stream),
// so backends can stream users into bulk loaders in several passes.
package seed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/store"
)

// DefaultSeed is the seed used by `wingate seed` and the demo store.
const DefaultSeed = 20260601

// Epoch is the fixed "now" of generated histories: completions happen in
// the year before it, so the data does not depend on the clock.
var Epoch = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// City is a home city with real coordinates; Weight is its relative share
// of users and SpreadKM the standard deviation of homes around its centre.
type City struct {
	Name     string
	Lat, Lon float64
	Weight   int
	SpreadKM float64
}

// Cities lists the home cities of generated users.
var Cities = []City{
	{"London", 51.5074, -0.1278, 9, 12}, {"Paris", 48.8566, 2.3522, 8, 9},
	{"Berlin", 52.5200, 13.4050, 6, 10}, {"Madrid", 40.4168, -3.7038, 6, 9},
	{"Rome", 41.9028, 12.4964, 5, 8}, {"Amsterdam", 52.3676, 4.9041, 4, 6},
	{"Vienna", 48.2082, 16.3738, 3, 7}, {"Stockholm", 59.3293, 18.0686, 3, 8},
	{"Warsaw", 52.2297, 21.0122, 3, 8}, {"Lisbon", 38.7223, -9.1393, 3, 7},
	{"Dublin", 53.3498, -6.2603, 2, 6}, {"Prague", 50.0755, 14.4378, 2, 6},
	{"Zurich", 47.3769, 8.5417, 2, 5}, {"Barcelona", 41.3874, 2.1686, 4, 7},
	{"Munich", 48.1351, 11.5820, 3, 7}, {"Milan", 45.4642, 9.1900, 3, 7},
	{"Istanbul", 41.0082, 28.9784, 6, 14}, {"New York", 40.7128, -74.0060, 10, 14},
	{"Los Angeles", 34.0522, -118.2437, 8, 20}, {"Chicago", 41.8781, -87.6298, 5, 14},
	{"Toronto", 43.6532, -79.3832, 4, 12}, {"San Francisco", 37.7749, -122.4194, 4, 10},
	{"Seattle", 47.6062, -122.3321, 3, 10}, {"Boston", 42.3601, -71.0589, 3, 9},
	{"Austin", 30.2672, -97.7431, 2, 10}, {"Miami", 25.7617, -80.1918, 3, 12},
	{"Mexico City", 19.4326, -99.1332, 6, 15}, {"São Paulo", -23.5505, -46.6333, 7, 16},
	{"Buenos Aires", -34.6037, -58.3816, 5, 13}, {"Bogotá", 4.7110, -74.0721, 3, 10},
	{"Lima", -12.0464, -77.0428, 3, 11}, {"Tokyo", 35.6762, 139.6503, 9, 16},
	{"Seoul", 37.5665, 126.9780, 6, 13}, {"Singapore", 1.3521, 103.8198, 4, 8},
	{"Sydney", -33.8688, 151.2093, 5, 15}, {"Melbourne", -37.8136, 144.9631, 4, 14},
	{"Mumbai", 19.0760, 72.8777, 7, 14}, {"Bangalore", 12.9716, 77.5946, 5, 12},
	{"Dubai", 25.2048, 55.2708, 3, 10}, {"Cairo", 30.0444, 31.2357, 4, 12},
	{"Lagos", 6.5244, 3.3792, 4, 12}, {"Nairobi", -1.2921, 36.8219, 3, 9},
	{"Cape Town", -33.9249, 18.4241, 2, 10}, {"Bangkok", 13.7563, 100.5018, 4, 12},
	{"Jakarta", -6.2088, 106.8456, 4, 13}, {"Manila", 14.5995, 120.9842, 3, 11},
	{"Hong Kong", 22.3193, 114.1694, 3, 7}, {"Taipei", 25.0330, 121.5654, 2, 8},
	{"Auckland", -36.8485, 174.7633, 1, 9}, {"Vancouver", 49.2827, -123.1207, 2, 9},
}

var firstNames = strings.Fields(`Ava Liam Mia Noah Zoe Ethan Ines Lucas Emma Hugo Sofia Leo Chloe Mateo
Hana Kenji Yuna Arjun Priya Omar Layla Diego Lucia Tomas Elif Emre Amara Kofi Nia Sven Freja Lars Ingrid
Marco Giulia Pablo Carmen Felix Lena Jonas Clara Luca Alice Theo Nora Oscar Maya Adam Sara Ivan Olga Piotr
Zofia Aoife Sean Chen Wei Mei Jin Min-jun Seo-yeon Ravi Ananya Sipho Thandi Chidi Ada Youssef Fatima
Kai Isla Finn Ruby Eli Grace Max Ella Sam Lily Ben Rosa Dan Iris Tom Anna Nils Elsa Rui Ana Joao Beatriz
Mateus Camila Santiago Valentina Andres Paula Lukas Marta Jakub Eva Tariq Aisha`)

var lastNames = strings.Fields(`Smith Jones Martin Bernard Muller Schmidt Garcia Lopez Rossi Russo Silva
Santos Kowalski Nowak Andersson Johansson Nielsen Jensen Murphy Kelly Dubois Moreau Fischer Weber Tanaka
Sato Suzuki Kim Lee Park Chen Wang Li Zhang Patel Sharma Singh Khan Ahmed Hassan Okafor Mensah Ndlovu
Mwangi Costa Ferreira Rodriguez Martinez Hernandez Gonzalez Perez Novak Horvat Yilmaz Kaya Demir Cohen
Levi Brown Taylor Wilson Clarke Walker Wright Green Hall Young King Scott Adams Baker Nelson Carter Reyes
Cruz Ramos Torres Nguyen Tran Pham Ivanova Petrov Popescu Bianchi Romano Jansen Bakker Visser`)

// challengeActions gives, per category, the actions challenge titles are
// made from; difficulty sets the setting and the points.
var challengeActions = map[string][]string{
	"conversation": {"Ask a stranger for a recommendation", "Compliment someone's style", "Start small talk in a queue",
		"Ask a follow-up question three times", "Share a personal story", "Hold eye contact through a conversation",
		"Learn one new thing about a neighbour", "Tell a joke to someone new", "Ask someone about their passion"},
	"confidence": {"Power-pose for two minutes", "Wear something bold", "Say no to a request without apologising",
		"Ask for a discount", "Sing out loud in public", "Eat alone at a restaurant without your phone",
		"Return an item at a shop", "Give honest feedback kindly", "Take up space in a crowded room"},
	"dating": {"Smile at someone you find attractive", "Start a conversation at a café", "Ask someone for their number",
		"Suggest a spontaneous coffee", "Plan a creative first date", "Give a sincere non-physical compliment",
		"Send the first message", "Ask someone to dance", "Tell a date what you enjoyed about them"},
	"friendship": {"Invite a colleague to lunch", "Reconnect with an old friend", "Host a small gathering",
		"Join a local club", "Organise a group outing", "Introduce two friends to each other",
		"Check in on a friend you have not seen", "Say yes to an invitation", "Plan a game night"},
	"public-speaking": {"Ask a question at a talk", "Give a toast", "Tell a story to a group",
		"Speak first in a meeting", "Give a five-minute talk", "Run a workshop", "Do an open-mic spot",
		"Present an idea to your team", "Answer questions from an audience"},
	"networking": {"Introduce yourself at a meetup", "Follow up with a new contact", "Ask for an informational interview",
		"Exchange contacts with three people", "Join a conversation circle", "Give your elevator pitch",
		"Thank a mentor in person", "Attend an event alone", "Offer help to someone in your field"},
}

var difficultySettings = map[string]struct {
	where  string
	points int
}{
	"easy":   {"in a relaxed setting", 10},
	"medium": {"with someone new", 25},
	"hard":   {"in a busy place", 50},
	"expert": {"in front of a crowd", 100},
}

// NumChallenges is the size of the generated catalogue.
const NumChallenges = 200

// Challenges returns the catalogue: NumChallenges challenges with ids
// 1..NumChallenges, spread over every category and difficulty.
func Challenges() []store.Challenge {
	out := make([]store.Challenge, 0, NumChallenges)
	r := rand.New(rand.NewPCG(DefaultSeed, 0))
	i := 0
	for len(out) < NumChallenges {
		cat := store.Categories[i%len(store.Categories)]
		diff := store.Difficulties[(i/len(store.Categories))%len(store.Difficulties)]
		acts := challengeActions[cat]
		act := acts[(i/(len(store.Categories)*len(store.Difficulties)))%len(acts)]
		set := difficultySettings[diff]
		id := int64(len(out) + 1)
		pts := set.points + r.IntN(set.points/5+1)
		out = append(out, store.Challenge{
			ID:          id,
			Slug:        fmt.Sprintf("%s-%s-%d", cat, diff, id),
			Title:       act + " " + set.where,
			Description: fmt.Sprintf("%s %s. Notice how you feel before and after, and write one sentence about it.", act, set.where),
			Category:    cat,
			Difficulty:  diff,
			Points:      pts,
		})
		i++
	}
	return out
}

// UserRecord is one generated user with everything that hangs off them.
type UserRecord struct {
	User store.User
	// HasLocation is false for the ~8% of users who never shared one.
	HasLocation bool
	Location    store.Location
	Completions []CompletionRecord
	// Score is the sum of the completions' points; ByCategory splits it.
	Score      int
	ByCategory map[string]store.CategoryScore
}

// CompletionRecord is one generated completion.
type CompletionRecord struct {
	ChallengeID int64
	Category    string
	Points      int
	At          time.Time
}

// Generator produces users for one seed. It is safe for concurrent use.
type Generator struct {
	seed       uint64
	challenges []store.Challenge
	cityCum    []int
}

// New returns a generator for seed.
func New(seed uint64) *Generator {
	g := &Generator{seed: seed, challenges: Challenges()}
	sum := 0
	for _, c := range Cities {
		sum += c.Weight
		g.cityCum = append(g.cityCum, sum)
	}
	return g
}

// User generates user id (1-based).
func (g *Generator) User(id int64) UserRecord {
	r := rand.New(rand.NewPCG(g.seed, uint64(id)))
	pick := r.IntN(g.cityCum[len(g.cityCum)-1])
	ci := 0
	for g.cityCum[ci] <= pick {
		ci++
	}
	city := Cities[ci]
	name := firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))]
	created := Epoch.Add(-time.Duration(400+r.IntN(600)) * 24 * time.Hour).Add(time.Duration(r.IntN(86400)) * time.Second)
	rec := UserRecord{
		User: store.User{ID: id, Name: name, City: city.Name, OpenToWingman: r.Float64() < 0.45, CreatedAt: created},
	}
	if r.Float64() < 0.92 {
		// Gaussian spread around the centre, in km, turned into degrees.
		dn, de := r.NormFloat64()*city.SpreadKM, r.NormFloat64()*city.SpreadKM
		lat := city.Lat + dn/111.32
		lon := city.Lon + de/(111.32*math.Cos(city.Lat*math.Pi/180))
		rec.HasLocation = true
		rec.Location = store.Location{UserID: id, Lat: round6(lat), Lon: round6(lon),
			UpdatedAt: Epoch.Add(-time.Duration(r.IntN(30*86400)) * time.Second)}
	}
	// Activity is heavy-tailed: many users did little, a few did a lot.
	n := int(math.Min(60, math.Floor(r.ExpFloat64()*9)))
	// A per-user taste: some categories are favoured.
	fav := r.IntN(len(store.Categories))
	rec.ByCategory = map[string]store.CategoryScore{}
	seen := make(map[int64]bool, n)
	for len(rec.Completions) < n {
		var c store.Challenge
		if r.Float64() < 0.5 {
			c = g.challenges[(r.IntN(NumChallenges/len(store.Categories)))*len(store.Categories)+fav]
		} else {
			c = g.challenges[r.IntN(NumChallenges)]
		}
		if seen[c.ID] {
			if len(seen) >= NumChallenges {
				break
			}
			continue
		}
		seen[c.ID] = true
		at := Epoch.Add(-time.Duration(1+r.IntN(365*86400)) * time.Second)
		rec.Completions = append(rec.Completions, CompletionRecord{ChallengeID: c.ID, Category: c.Category, Points: c.Points, At: at})
		rec.Score += c.Points
		cs := rec.ByCategory[c.Category]
		cs.Category = c.Category
		cs.Score += c.Points
		cs.Completions++
		rec.ByCategory[c.Category] = cs
	}
	return rec
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }
