package server

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/store"
)

// Defaults and limits of the Wingman endpoints.
const (
	defaultPageSize   = 20
	defaultRecent     = 10
	defaultRadiusKM   = 10.0
	defaultMatchLimit = 20
	locationBodyLimit = 1 << 10 // a location is two numbers
	routeChallenges   = "/api/challenges"
	routeChallenge    = "/api/challenges/:id"
	routeComplete     = "/api/challenges/:id/complete"
	routeReputation   = "/api/users/:id/reputation"
	routeMatches      = "/api/users/:id/matches"
	routeLocation     = "/api/users/:id/location"
)

// storeRoutes registers the Wingman API. Who may see each route is
// declared in apiRoutes (routes.go): the catalogue is public; the rest
// needs a bearer token, and matches and location belong to their owner
// only (403 for anyone else). Route templates are stable: the cache
// policy keys on them.
func (s *Server) storeRoutes() {
	s.registerAPI(fiber.MethodGet, routeChallenges, s.listChallenges)
	s.registerAPI(fiber.MethodGet, routeChallenge, s.getChallenge)
	s.registerAPI(fiber.MethodPost, routeComplete, s.completeChallenge)
	s.registerAPI(fiber.MethodGet, routeReputation, s.getReputation)
	s.registerAPI(fiber.MethodGet, routeMatches, s.getMatches)
	s.registerAPI(fiber.MethodGet, routeLocation, s.getLocation)
	s.registerAPI(fiber.MethodPut, routeLocation, s.putLocation)
}

// challengePage is the JSON of GET /api/challenges. NextCursor is opaque
// to clients: pass it back as ?cursor= for the following page; null on the
// last page.
type challengePage struct {
	Items      []store.Challenge `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

func (s *Server) listChallenges(c *fiber.Ctx) error {
	f := store.ChallengeFilter{Category: c.Query("category"), Difficulty: c.Query("difficulty"), Limit: defaultPageSize}
	var err error
	if f.Limit, err = intQuery(c, "limit", defaultPageSize, 1, store.MaxPageSize); err != nil {
		return err
	}
	if cur := c.Query("cursor"); cur != "" {
		if f.After, err = strconv.ParseInt(cur, 10, 64); err != nil || f.After < 0 {
			return badRequest("invalid_cursor", "cursor: not a cursor returned by this endpoint")
		}
	}
	p, err := s.deps.Store.ListChallenges(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := challengePage{Items: p.Items}
	if out.Items == nil {
		out.Items = []store.Challenge{}
	}
	if p.Next != 0 {
		n := strconv.FormatInt(p.Next, 10)
		out.NextCursor = &n
	}
	return c.JSON(out)
}

func (s *Server) getChallenge(c *fiber.Ctx) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ch, err := s.deps.Store.GetChallenge(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(ch)
}

// completionResponse is the JSON of POST /api/challenges/:id/complete.
type completionResponse struct {
	store.Completion
	Level int `json:"level"`
}

// completeChallenge records that the caller completed a challenge. A
// challenge counts once per user per UTC day: the first call answers 201
// with created=true; repeats that day answer 200 with the same completion
// and created=false, and change nothing — so retrying is safe.
func (s *Server) completeChallenge(c *fiber.Ctx) error {
	me, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	id, err := pathID(c)
	if err != nil {
		return err
	}
	comp, err := s.deps.Store.CompleteChallenge(c.UserContext(), me, id, time.Time{})
	if err != nil {
		return err
	}
	status := fiber.StatusOK
	if comp.Created {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(completionResponse{Completion: comp, Level: store.Level(comp.Score)})
}

// getReputation returns any member's reputation to any signed-in member
// (reputation is public inside the app); ?recent= sets how many recent
// events (0-100, default 10).
func (s *Server) getReputation(c *fiber.Ctx) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	recent, err := intQuery(c, "recent", defaultRecent, 0, store.MaxPageSize)
	if err != nil {
		return err
	}
	rep, err := s.deps.Store.GetReputation(c.UserContext(), id, recent)
	if err != nil {
		return err
	}
	return c.JSON(rep)
}

// matchesResponse is the JSON of GET /api/users/:id/matches.
type matchesResponse struct {
	UserID   int64         `json:"user_id"`
	RadiusKM float64       `json:"radius_km"`
	Matches  []store.Match `json:"matches"`
}

func (s *Server) getMatches(c *fiber.Ctx) error {
	id, err := ownerOnly(c)
	if err != nil {
		return err
	}
	q := store.MatchQuery{UserID: id, RadiusKM: defaultRadiusKM}
	if v := c.Query("radius_km"); v != "" {
		q.RadiusKM, err = strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(q.RadiusKM) || q.RadiusKM <= 0 || q.RadiusKM > store.MaxMatchRadiusKM {
			return badRequest("invalid_radius_km", "radius_km: must be a number in (0, 200]")
		}
	}
	if q.Limit, err = intQuery(c, "limit", defaultMatchLimit, 1, store.MaxMatchLimit); err != nil {
		return err
	}
	ms, err := s.deps.Store.FindMatches(c.UserContext(), q)
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []store.Match{}
	}
	return c.JSON(matchesResponse{UserID: id, RadiusKM: q.RadiusKM, Matches: ms})
}

func (s *Server) getLocation(c *fiber.Ctx) error {
	id, err := ownerOnly(c)
	if err != nil {
		return err
	}
	loc, err := s.deps.Store.GetLocation(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(loc)
}

// locationBody is the JSON accepted by PUT /api/users/:id/location.
type locationBody struct {
	Lat *float64 `json:"lat"`
	Lon *float64 `json:"lon"`
}

// parseLocationBody decodes and validates a location body; errors name
// the field.
func parseLocationBody(body []byte) (lat, lon float64, err error) {
	if len(body) > locationBodyLimit {
		return 0, 0, &APIError{Status: fiber.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "body: at most 1 KiB"}
	}
	var b locationBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return 0, 0, badRequest("invalid_body", "body: must be a JSON object {\"lat\": number, \"lon\": number}")
	}
	if dec.More() {
		return 0, 0, badRequest("invalid_body", "body: trailing data after the JSON object")
	}
	switch {
	case b.Lat == nil:
		return 0, 0, badRequest("invalid_lat", "lat: required")
	case b.Lon == nil:
		return 0, 0, badRequest("invalid_lon", "lon: required")
	}
	loc := store.Location{Lat: *b.Lat, Lon: *b.Lon}
	if err := loc.Validate(); err != nil {
		return 0, 0, err
	}
	return loc.Lat, loc.Lon, nil
}

// putLocation stores the caller's location and returns what was stored.
func (s *Server) putLocation(c *fiber.Ctx) error {
	id, err := ownerOnly(c)
	if err != nil {
		return err
	}
	lat, lon, err := parseLocationBody(c.Body())
	if err != nil {
		return err
	}
	loc, err := s.deps.Store.PutLocation(c.UserContext(), store.Location{UserID: id, Lat: lat, Lon: lon})
	if err != nil {
		return err
	}
	return c.JSON(loc)
}

// pathID parses the ":id" path parameter (400 naming "id" otherwise).
func pathID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("invalid_id", "id: must be a positive integer")
	}
	return id, nil
}

// intQuery parses an optional integer query parameter in [lo, hi].
func intQuery(c *fiber.Ctx, name string, def, lo, hi int) (int, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("invalid_"+name, name+": must be an integer between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi))
	}
	return n, nil
}
