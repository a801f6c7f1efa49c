package store

import (
	"errors"
	"math"
	"testing"
)

func TestLevel(t *testing.T) {
	for _, tc := range []struct{ score, want int }{
		{-5, 1}, {0, 1}, {49, 1}, {50, 2}, {199, 2}, {200, 3}, {449, 3}, {450, 4}, {800, 5}, {5000, 11},
	} {
		if got := Level(tc.score); got != tc.want {
			t.Errorf("Level(%d) = %d, want %d", tc.score, got, tc.want)
		}
	}
}

func TestMatchRank(t *testing.T) {
	for _, tc := range []struct {
		name         string
		d, r         float64
		mine, theirs int
		want         float64
	}{
		{"same place same score", 0, 10, 100, 100, 0},
		{"edge of radius", 10, 10, 100, 100, 0.7},
		{"gap saturates", 0, 10, 0, 5000, 0.3},
		{"gap symmetric", 5, 10, 700, 200, 0.35 + 0.15},
	} {
		if got := MatchRank(tc.d, tc.r, tc.mine, tc.theirs); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: MatchRank = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		field string
	}{
		{"lat", Location{Lat: math.NaN()}.Validate(), "lat"},
		{"lon", Location{Lon: 181}.Validate(), "lon"},
		{"radius", MatchQuery{RadiusKM: 201, Limit: 1}.Validate(), "radius_km"},
		{"match limit", MatchQuery{RadiusKM: 1, Limit: 0}.Validate(), "limit"},
		{"category", ChallengeFilter{Category: "x", Limit: 1}.Validate(), "category"},
	} {
		var fe *FieldError
		if !errors.As(tc.err, &fe) || fe.Field != tc.field || !errors.Is(tc.err, ErrInvalid) {
			t.Errorf("%s: err = %v, want invalid %s", tc.name, tc.err, tc.field)
		}
	}
	if err := (Location{Lat: 90, Lon: -180}).Validate(); err != nil {
		t.Errorf("edge location: %v", err)
	}
}

func TestNewSessionID(t *testing.T) {
	a, b := NewSessionID(), NewSessionID()
	if len(a) != 32 || a == b {
		t.Fatalf("session ids %q %q", a, b)
	}
}
