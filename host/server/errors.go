package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store"
)

// APIError is an error answer of the table in host/apierr: handlers
// return it and every surface renders it in its own shape.
type APIError = apierr.Error

// Constructors for the common cases; the message is the handler's own
// text about the request.
func badRequest(code, msg string) *APIError { return apierr.Newf(apierr.Code(code), msg) }
func notFound(msg string) *APIError         { return apierr.Newf(apierr.NotFound, msg) }
func forbidden(msg string) *APIError        { return apierr.Newf(apierr.Forbidden, msg) }
func unauthorized(msg string) *APIError     { return apierr.Newf(apierr.Unauthorized, msg) }

// apiError is the one mapping from an error of any layer onto its entry
// of the table. It never copies an error's text into the answer: the
// message is the table's, or the project's own text of an error written
// for clients (a field and its reason). internal is true when the error
// is not one the table foresees; the caller logs it.
func apiError(err error) (ae *APIError, internal bool) {
	var (
		direct *APIError
		fe     *store.FieldError
		ie     *chat.InputError
		fbe    *fiber.Error
		se     *rollout.StepError
		rie    *rollout.InvalidError
		syn    *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &direct):
		return direct, false
	case errors.As(err, &fe):
		return apierr.Field(fe.Field, fe.Reason), false
	case errors.As(err, &ie):
		return apierr.Field(ie.Field, ie.Reason), false
	case errors.As(err, &rie):
		return apierr.Field(rie.Field, rie.Reason), false
	case errors.As(err, &se):
		return apierr.New(apierr.Rejected), false
	case errors.Is(err, store.ErrInvalid), errors.Is(err, rollout.ErrInvalid):
		return apierr.New(apierr.Invalid), false
	case errors.Is(err, store.ErrNotFound), errors.Is(err, rollout.ErrNotFound):
		return apierr.New(apierr.NotFound), false
	case errors.Is(err, store.ErrConflict):
		return apierr.New(apierr.Conflict), false
	case errors.Is(err, rollout.ErrNoRollbackTarget):
		return apierr.New(apierr.NoRollbackTarget), false
	case errors.Is(err, chat.ErrForbidden):
		return apierr.Newf(apierr.Forbidden, "not your chat session"), false
	case errors.Is(err, chat.ErrAllTiersDown):
		return apierr.New(apierr.LLMUnavailable), false
	case errors.Is(err, llm.ErrBadRequest):
		return apierr.Newf(apierr.LLMError, "the model rejected the request"), false
	case errors.Is(err, llm.ErrCanceled):
		return apierr.New(apierr.LLMTimeout), false
	case errors.As(err, new(*llm.Error)):
		return apierr.New(apierr.LLMError), false
	case errors.Is(err, store.ErrUnavailable):
		return apierr.Newf(apierr.Unavailable, "the database is unavailable, retry later"), false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return apierr.New(apierr.Unavailable), false
	case errors.As(err, &syn), errors.As(err, &typ):
		return apierr.New(apierr.InvalidBody), false
	case errors.As(err, &fbe):
		return apierr.ForStatus(fbe.Code), false
	case errors.Is(err, policy.ErrTimeout), errors.Is(err, policy.ErrUnavailable):
		return apierr.New(apierr.Unavailable), true
	}
	return apierr.New(apierr.Internal), true
}

// writeError renders ae in the project's JSON shape (/api, /admin). No
// cache, shared or private, keeps an error answer.
func writeError(c *fiber.Ctx, ae *APIError) error {
	c.Response().Header.SetCanonical(headerCacheControl, ccNoStore)
	return c.Status(ae.Status).JSON(ae.JSONBody())
}

// handleError is the server's error handler: every error a handler of
// /api or /admin returns is answered from the table; what the table does
// not foresee is logged with its text and answered 500 "internal".
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	err = s.refusedBody(c, err)
	if isAnthropicPath(c.Path()) {
		// The Messages API answers in Anthropic's shape.
		e := toAnthropicError(err)
		if _, internal := apiError(err); internal && e.Status >= 500 {
			s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		}
		c.Response().Header.SetCanonical(headerCacheControl, ccNoStore)
		return writeAnthropicError(c, e)
	}
	if isOpenAIPath(c.Path()) {
		// The OpenAI-compatible surface answers in OpenAI's shape,
		// an unknown path under /v1 included.
		oe := toOpenAIError(err)
		if _, internal := apiError(err); internal && oe.Status >= 500 {
			s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		}
		c.Response().Header.SetCanonical(headerCacheControl, ccNoStore)
		return writeOpenAIError(c, oe)
	}
	ae, internal := apiError(err)
	switch {
	case internal:
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	case ae.Status >= 500:
		// The store logs an outage once per state change; per request
		// only at debug level.
		s.log.Debug("request refused", "method", c.Method(), "path", c.Path(), "code", ae.Code, "err", err)
	}
	return writeError(c, ae)
}

// rolloutError answers an error of the rollout manager. A rejected
// version's body names the failed step and a reason in the project's own
// words (stepReason); the full error goes to the log.
func (s *Server) rolloutError(c *fiber.Ctx, rec *rollout.Record, err error) error {
	var se *rollout.StepError
	if errors.As(err, &se) {
		s.log.Info("admin: version rejected", "step", se.Step, "err", err)
		ae := apierr.New(apierr.Rejected)
		body := fiber.Map{"error": fiber.Map{"code": ae.Code, "message": ae.Message + ": step " + se.Step,
			"step": se.Step, "reason": stepReason(se)}}
		if rec != nil && rec.ID != 0 {
			body["version"] = rec
		}
		return c.Status(ae.Status).JSON(body)
	}
	var le *policy.LimitError
	switch {
	case errors.As(err, &le):
		ae := apierr.New(apierr.OverLimit)
		if le.Field == "wasm" {
			ae.Status = fiber.StatusRequestEntityTooLarge
		}
		return c.Status(ae.Status).JSON(fiber.Map{"error": fiber.Map{"code": ae.Code, "message": le.Error(),
			"field": le.Field, "limit": le.Limit, "unit": le.Unit}})
	case errors.Is(err, rollout.ErrStore):
		s.log.Error("admin: policy version store failed", "path", c.Path(), "err", err)
		return apierr.New(apierr.StoreUnavailable)
	case errors.Is(err, rollout.ErrSuperseded):
		return apierr.New(apierr.Superseded)
	case errors.Is(err, rollout.ErrClosed):
		return apierr.New(apierr.ShuttingDown)
	case errors.Is(err, rollout.ErrInvalid) && !errors.As(err, new(*rollout.InvalidError)):
		// The manager's checks speak the project's own words.
		return apierr.Newf(apierr.Invalid, strings.TrimPrefix(strings.TrimPrefix(err.Error(), "rollout: invalid: "), "rollout: "))
	}
	return err
}

// stepReason says why a version was rejected without any library's text:
// a load error's part, expectation and finding; the self-test's, the
// signature's and the validation's own messages; a fixed sentence for the
// steps whose causes come from the compiler or the database.
func stepReason(se *rollout.StepError) string {
	var le *policy.LoadError
	if errors.As(se.Err, &le) {
		r := "module: " + le.Item
		if le.Want != "" || le.Found != "" {
			r += ": want " + le.Want + ", found " + le.Found
		}
		if le.Err != nil {
			// The loader's own words come first ("not a WebAssembly
			// module: <decoder's text>"); the decoder's are left out.
			own, _, _ := strings.Cut(le.Err.Error(), ":")
			r += ": " + own
		}
		return r
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(se.Err, &syn), errors.As(se.Err, &typ):
		return "a case file is not valid JSON of cases"
	case se.Step == rollout.StepCompile:
		return "the module does not compile"
	case se.Step == rollout.StepWarm:
		return "the module's instances did not start"
	case se.Step == rollout.StepSwitch:
		return "the activation could not be recorded; retry"
	}
	return se.Err.Error() // signature, validate and self-test: the pipeline's own text
}
