package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/llm"
)

// Virtual keys on the gateway (/v1): a bearer token (or x-api-key) that
// starts with keys.SecretPrefix is an operator-issued key, anything else
// a user token. A keyed request is checked against the key's models, then
// reserves its worst case on the key's limits (keys.Limiter) before the
// pipeline runs, and is charged its actual usage (or, for a stream that
// broke after its first byte, the partial usage) when it ends.

// localKey is the Locals key of the request's *keys.Key.
const localKey = "vkey"

// gatewayAuth authenticates a /v1 request by virtual key or user token.
func (s *Server) gatewayAuth(c *fiber.Ctx) error {
	tok, ok := bearer(c.Request().Header.Peek(fiber.HeaderAuthorization))
	if !ok || !keys.LooksLikeSecret(string(tok)) {
		return s.requireAuth(c)
	}
	if s.deps.Keys == nil {
		return apierr.Newf(apierr.Unauthorized, "API keys are not enabled on this server")
	}
	k, err := s.deps.Keys.Authenticate(c.UserContext(), string(tok))
	if err != nil {
		return keyAuthError(err)
	}
	c.Locals(localKey, k)
	return c.Next()
}

// keyAuthError is the 401 (or 503) of a refused key; every refusal of a
// secret is OpenAI's invalid_api_key.
func keyAuthError(err error) error {
	switch {
	case errors.Is(err, keys.ErrRevoked):
		return apierr.Newf(apierr.Unauthorized, "this API key has been revoked")
	case errors.Is(err, keys.ErrExpired):
		return apierr.Newf(apierr.Unauthorized, "this API key has expired")
	case errors.Is(err, keys.ErrUnavailable):
		return apierr.New(apierr.Unavailable)
	case errors.Is(err, keys.ErrBusy):
		return apierr.Newf(apierr.RateLimited, "too many requests with unknown API keys, retry later")
	}
	return apierr.Newf(apierr.Unauthorized, "invalid API key")
}

// validKey reports whether tok is a key that opens now (for the body
// limit, read before the handler runs).
func (s *Server) validKey(tok []byte) bool {
	if s.deps.Keys == nil || !keys.LooksLikeSecret(string(tok)) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := s.deps.Keys.Authenticate(ctx, string(tok))
	return err == nil
}

// keyCall is one keyed request's reservation, charged once.
type keyCall struct {
	svc      *keys.Service
	key      *keys.Key
	res      *keys.Reservation
	endpoint string
	id       string
}

// admitKey checks a keyed request before the pipeline: the model, then a
// reservation of its worst case. It returns nil, nil for a user token.
// A budgeted request without max_tokens gets the estimate's, so that its
// answer cannot outgrow what was reserved.
func (s *Server) admitKey(c *fiber.Ctx, endpoint, requestID string, creq *chat.CompletionRequest) (*keyCall, error) {
	k, _ := c.Locals(localKey).(*keys.Key)
	if k == nil {
		return nil, nil
	}
	if !k.Allows(creq.Model) {
		return nil, apierr.Newf(apierr.ModelNotAllowed, fmt.Sprintf("this API key may not call the model '%s'", clip(creq.Model, 64)))
	}
	creq.User = "key:" + k.ID + userSuffix(creq.User)
	if !k.Limited() {
		return &keyCall{svc: s.deps.Keys, key: k, endpoint: endpoint, id: requestID}, nil
	}
	est := s.deps.Chat.Estimate(creq)
	if creq.MaxTokens == 0 {
		creq.MaxTokens = est.OutputTokens
	}
	cost := keys.Micros(math.Ceil(est.CostUSD * 1e6))
	res, err := s.deps.Keys.Reserve(c.UserContext(), k, cost, est.InputTokens+est.OutputTokens)
	if err != nil {
		var le *keys.LimitError
		switch {
		case errors.As(err, &le) && le.Limit == "budget":
			return nil, apierr.Newf(apierr.KeyQuota, "this API key's budget for the period is spent (or too little is left for this request's worst case)")
		case errors.As(err, &le):
			if le.RetryAfter > 0 {
				c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(le.RetryAfter.Seconds()))))
			}
			return nil, apierr.Newf(apierr.KeyRateLimited, "over this API key's "+le.Limit+" limit, retry later")
		case errors.Is(err, keys.ErrLimiterDown):
			s.log.Warn("API key limits unavailable", "key", k.ID, "err", err)
			return nil, apierr.New(apierr.KeyLimitsDown)
		}
		s.log.Error("API key reservation failed", "key", k.ID, "err", err)
		return nil, apierr.New(apierr.KeyLimitsDown)
	}
	return &keyCall{svc: s.deps.Keys, key: k, res: res, endpoint: endpoint, id: requestID}, nil
}

// clip shortens s to at most n bytes (on a rune boundary) for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// userSuffix is the request's own user field after a colon, if any.
func userSuffix(user string) string {
	if _, after, ok := strings.Cut(user, ":"); ok && after != "" {
		return ":" + after
	}
	return ""
}

// complete runs a gateway request through the pipeline, plain, and
// charges it to its key (kc nil: a user token's call).
func (kc *keyCall) complete(ctx context.Context, svc *chat.Service, creq chat.CompletionRequest) (*chat.Completion, error) {
	comp, err := svc.Complete(ctx, creq, nil)
	kc.charge(comp, err)
	return comp, err
}

// gatewayStream runs a gateway request streamed (startStream), labelling
// its chunks with the model answering, and charges it to its key when it
// ends.
func (s *Server) gatewayStream(creq chat.CompletionRequest, kc *keyCall) *turnStream {
	return startStream(func(ctx context.Context, onDelta llm.DeltaFunc, model *string) (any, error) {
		creq.OnAttempt = func(_, m string) { *model = m }
		comp, err := s.deps.Chat.Complete(ctx, creq, onDelta)
		kc.charge(comp, err)
		return comp, err
	})
}

// charge settles the call with the pipeline's result: the actual usage
// and cost, the partial ones of a broken stream, or nothing for a call
// that failed before the provider answered.
func (kc *keyCall) charge(comp *chat.Completion, err error) {
	if kc == nil {
		return
	}
	ctx := context.Background()
	u := keys.Usage{RequestID: kc.id, Endpoint: kc.endpoint}
	var pe *chat.PartialError
	switch {
	case err == nil && comp != nil:
		u.Model, u.Tier = comp.Response.Model, comp.Tier
		u.InputTokens, u.OutputTokens = comp.Response.Usage.InputTokens, comp.Response.Usage.OutputTokens
		u.Cost = keys.ToMicros(comp.CostUSD)
	case errors.As(err, &pe):
		u.Model, u.Tier, u.Partial = pe.Model, pe.Tier, true
		u.InputTokens, u.OutputTokens = pe.Usage.InputTokens, pe.Usage.OutputTokens
		u.Cost = keys.ToMicros(pe.CostUSD)
	}
	if kc.res == nil {
		kc.res = kc.svc.Limiter().Unlimited(kc.key)
	}
	kc.svc.Charge(ctx, kc.res, u)
}

// keyRoutes registers the virtual keys' admin API under g (/admin).
func (s *Server) keyRoutes(g fiber.Router) {
	g.Get("/keys", s.adminKeyList)
	g.Post("/keys", s.adminKeyCreate)
	g.Get("/keys/:key", s.adminKeyGet)
	g.Patch("/keys/:key", s.adminKeyLimits)
	g.Post("/keys/:key/rotate", s.adminKeyRotate)
	g.Post("/keys/:key/revoke", s.adminKeyRevoke)
	g.Delete("/keys/:key", s.adminKeyRevoke)
	g.Get("/keys/:key/spend", s.adminKeySpend)
}

// keyError answers a keys error from the table, with the package's own
// text for an invalid field.
func keyError(err error) error {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return apierr.Newf(apierr.NotFound, "no such API key")
	case errors.Is(err, keys.ErrInvalid):
		msg := err.Error()
		if i := strings.Index(msg, keys.ErrInvalid.Error()+": "); i >= 0 {
			msg = msg[i+len(keys.ErrInvalid.Error())+2:]
		}
		return apierr.Newf(apierr.Invalid, msg)
	}
	return apierr.New(apierr.Unavailable)
}

// keyBody is the JSON an operator sends to create a key or change its
// limits; a field left out keeps its default (create) or current value
// (change).
type keyBody struct {
	Name         *string          `json:"name"`
	Models       *[]string        `json:"models"`
	RPM          *int             `json:"rpm"`
	TPM          *int             `json:"tpm"`
	BudgetUSD    *float64         `json:"budget_usd"`
	BudgetPeriod *string          `json:"budget_period"`
	ExpiresAt    *time.Time       `json:"expires_at"`
	ExpiresIn    *string          `json:"expires_in"`
	Metadata     *json.RawMessage `json:"metadata"`
}

// parseKeyBody reads a keyBody strictly: one JSON object, no unknown
// fields, nothing after it.
func parseKeyBody(body []byte) (keyBody, error) {
	var kb keyBody
	if len(bytes.TrimSpace(body)) == 0 {
		return kb, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kb); err != nil {
		return kb, apierr.Newf(apierr.InvalidBody, "the body must be a JSON object with the fields name, models, rpm, tpm, budget_usd, budget_period, expires_at, expires_in, metadata")
	}
	if dec.More() {
		return kb, apierr.New(apierr.InvalidBody)
	}
	return kb, nil
}

// apply sets l's fields from kb.
func (kb *keyBody) apply(l *keys.Limits) error {
	if kb.Models != nil {
		l.Models = *kb.Models
	}
	if kb.RPM != nil {
		l.RPM = *kb.RPM
	}
	if kb.TPM != nil {
		l.TPM = *kb.TPM
	}
	if kb.BudgetUSD != nil {
		b := *kb.BudgetUSD
		if math.IsNaN(b) || b < 0 || b > keys.MaxBudgetUSD {
			return apierr.Field("budget_usd", fmt.Sprintf("0 (none) to %d", keys.MaxBudgetUSD))
		}
		l.Budget = keys.ToMicros(b)
	}
	if kb.BudgetPeriod != nil {
		l.BudgetPeriod = keys.Period(*kb.BudgetPeriod)
	}
	return nil
}

func (s *Server) adminKeyCreate(c *fiber.Ctx) error {
	kb, err := parseKeyBody(c.Body())
	if err != nil {
		return err
	}
	spec := keys.Spec{Limits: keys.Limits{BudgetPeriod: keys.PeriodMonth}}
	if kb.Name != nil {
		spec.Name = *kb.Name
	}
	if err := kb.apply(&spec.Limits); err != nil {
		return err
	}
	switch {
	case kb.ExpiresAt != nil && kb.ExpiresIn != nil:
		return apierr.Field("expires_in", "give expires_at or expires_in, not both")
	case kb.ExpiresAt != nil:
		if !kb.ExpiresAt.After(time.Now()) {
			return apierr.Field("expires_at", "must be in the future")
		}
		spec.ExpiresAt = kb.ExpiresAt
	case kb.ExpiresIn != nil:
		d, err := time.ParseDuration(*kb.ExpiresIn)
		if err != nil || d <= 0 || d > 10*365*24*time.Hour {
			return apierr.Field("expires_in", "a positive Go duration such as 720h, at most ten years")
		}
		at := time.Now().Add(d).UTC().Truncate(time.Second)
		spec.ExpiresAt = &at
	}
	if kb.Metadata != nil {
		m := bytes.TrimSpace(*kb.Metadata)
		if len(m) == 0 || m[0] != '{' {
			return apierr.Field("metadata", "must be a JSON object")
		}
		spec.Metadata = m
	}
	created, err := s.deps.Keys.Create(c.UserContext(), spec)
	if err != nil {
		return keyError(err)
	}
	s.log.Info("API key created", "key", created.Key.ID, "name", created.Key.Name)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"key": keys.KeyJSON(created.Key), "secret": created.Secret})
}

func (s *Server) adminKeyList(c *fiber.Ctx) error {
	list, err := s.deps.Keys.List(c.UserContext())
	if err != nil {
		return keyError(err)
	}
	out := make([]map[string]any, len(list))
	for i, k := range list {
		out[i] = keys.KeyJSON(k)
	}
	return c.JSON(fiber.Map{"keys": out})
}

func (s *Server) adminKeyGet(c *fiber.Ctx) error {
	k, err := s.deps.Keys.Get(c.UserContext(), c.Params("key"))
	if err != nil {
		return keyError(err)
	}
	return c.JSON(fiber.Map{"key": keys.KeyJSON(k)})
}

func (s *Server) adminKeyLimits(c *fiber.Ctx) error {
	kb, err := parseKeyBody(c.Body())
	if err != nil {
		return err
	}
	if kb.Name != nil || kb.ExpiresAt != nil || kb.ExpiresIn != nil || kb.Metadata != nil {
		return apierr.Newf(apierr.Invalid, "only the limits change: models, rpm, tpm, budget_usd, budget_period")
	}
	k, err := s.deps.Keys.Get(c.UserContext(), c.Params("key"))
	if err != nil {
		return keyError(err)
	}
	l := k.Limits
	if err := kb.apply(&l); err != nil {
		return err
	}
	if k, err = s.deps.Keys.SetLimits(c.UserContext(), k.ID, l); err != nil {
		return keyError(err)
	}
	s.log.Info("API key limits changed", "key", k.ID)
	return c.JSON(fiber.Map{"key": keys.KeyJSON(k)})
}

func (s *Server) adminKeyRotate(c *fiber.Ctx) error {
	var grace time.Duration
	if g := c.Query("grace"); g != "" {
		d, err := time.ParseDuration(g)
		if err != nil || d < 0 || d > keys.MaxRotateGrace {
			return apierr.Field("grace", "a Go duration from 0 to "+keys.MaxRotateGrace.String())
		}
		grace = d
	}
	created, err := s.deps.Keys.Rotate(c.UserContext(), c.Params("key"), grace)
	if err != nil {
		return keyError(err)
	}
	s.log.Info("API key rotated", "key", created.Key.ID, "grace", grace)
	return c.JSON(fiber.Map{"key": keys.KeyJSON(created.Key), "secret": created.Secret})
}

func (s *Server) adminKeyRevoke(c *fiber.Ctx) error {
	k, err := s.deps.Keys.Revoke(c.UserContext(), c.Params("key"))
	if err != nil {
		return keyError(err)
	}
	s.log.Info("API key revoked", "key", k.ID)
	return c.JSON(fiber.Map{"key": keys.KeyJSON(k)})
}

func (s *Server) adminKeySpend(c *fiber.Ctx) error {
	var from, to time.Time
	for _, f := range []struct {
		name string
		at   *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := c.Query(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return apierr.Field(f.name, "an RFC 3339 time such as 2026-12-01T00:00:00Z")
			}
			*f.at = t
		}
	}
	if from.IsZero() != to.IsZero() {
		return apierr.Newf(apierr.Invalid, "give both from and to, or neither (the current budget period)")
	}
	sp, err := s.deps.Keys.Spend(c.UserContext(), c.Params("key"), from, to)
	if err != nil {
		return keyError(err)
	}
	return c.JSON(fiber.Map{"spend": keys.SpendJSON(sp)})
}
