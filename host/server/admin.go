package server

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
)

// DefaultAdminUploadLimit caps an uploaded policy module
// (Config.AdminUploadLimit): policy.MaxModuleBytes, the cap of a module in
// the policy directory too.
const DefaultAdminUploadLimit = policy.MaxModuleBytes

// Response attribution: every response whose cache decision came from a
// policy names it, as "<policy>@<version>" (version: the module's short
// digest); a fail-open decision adds X-Policy-Outcome.
var (
	headerPolicyVersion = []byte("X-Policy-Version")
	headerPolicyOutcome = []byte("X-Policy-Outcome")
)

func setPolicyHeaders(c *fiber.Ctx, r policy.Result) {
	if r.Version == "" {
		return
	}
	var buf [96]byte
	b := append(buf[:0], r.Policy...)
	b = append(b, '@')
	b = append(b, r.Version...)
	h := &c.Response().Header
	h.SetCanonical(headerPolicyVersion, b)
	if r.Outcome != policy.OutcomeOK {
		h.SetCanonical(headerPolicyOutcome, []byte(r.Outcome.String()))
	}
}

// adminRoutes registers the admin API under /admin (Deps.Rollout): policy
// versions, activation, rollback, shadow runs and this instance's status.
// Every route needs "Authorization: Bearer <WINGATE_ADMIN_TOKEN>"; with no
// token configured the API answers 403.
func (s *Server) adminRoutes() {
	g := s.app.Group("/admin", s.requireAdmin)
	g.Get("/policies", s.adminList)
	g.Post("/policies", s.adminUpload)
	g.Get("/policies/:id", s.adminGet)
	g.Post("/policies/:id/activate", s.adminActivate)
	g.Post("/policies/:id/shadow", s.adminShadowStart)
	g.Post("/rollback/:kind", s.adminRollback)
	g.Get("/shadow", s.adminShadowList)
	g.Delete("/shadow/:kind", s.adminShadowStop)
	g.Get("/status", s.adminStatus)
	if s.deps.Cache != nil {
		s.cacheAdminRoutes(g)
	}
	if s.deps.Keys != nil {
		s.keyRoutes(g)
	}
}

func (s *Server) adminList(c *fiber.Ctx) error {
	recs, err := s.deps.Rollout.List(c.UserContext())
	if err != nil {
		return s.rolloutError(c, nil, err)
	}
	if recs == nil {
		recs = []rollout.Record{}
	}
	return c.JSON(fiber.Map{"versions": recs, "instance": s.deps.Rollout.Status()})
}

func (s *Server) adminGet(c *fiber.Ctx) error {
	id, err := adminID(c)
	if err != nil {
		return err
	}
	rec, err := s.deps.Rollout.Get(c.UserContext(), id)
	if err != nil {
		return s.rolloutError(c, nil, err)
	}
	return c.JSON(fiber.Map{"version": rec})
}

func adminID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("invalid_id", "id: want a positive integer")
	}
	return id, nil
}

// adminUpload stores a new version. The module comes as multipart/form-data
// (file field "wasm"; fields kind, name, config, signature, cases,
// deadline_ms, default_tier, activate) or as the raw body (any other
// content type) with the same fields as query parameters. With
// activate=true the version also goes through the pipeline.
func (s *Server) adminUpload(c *fiber.Ctx) error {
	limit := s.uploadLimit()
	if len(c.Request().Body()) > limit+multipartSlack {
		return &APIError{Status: fiber.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "upload over the limit of " + strconv.Itoa(limit) + " bytes"}
	}
	field := func(name string) string { return c.Query(name) }
	var wasm []byte
	if strings.HasPrefix(c.Get(fiber.HeaderContentType), fiber.MIMEMultipartForm) {
		form, err := c.MultipartForm()
		if err != nil {
			return badRequest("invalid_form", "multipart form: the upload could not be read")
		}
		field = func(name string) string {
			if v := form.Value[name]; len(v) > 0 {
				return v[0]
			}
			if fs := form.File[name]; len(fs) > 0 && name != "wasm" {
				if f, err := fs[0].Open(); err == nil {
					defer f.Close()
					b, _ := io.ReadAll(io.LimitReader(f, int64(limit)))
					return string(b)
				}
			}
			return c.Query(name)
		}
		fs := form.File["wasm"]
		if len(fs) == 0 {
			return badRequest("invalid_form", "wasm: missing file field")
		}
		if fs[0].Size > int64(limit) {
			return &APIError{Status: fiber.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "wasm: over the limit of " + strconv.Itoa(limit) + " bytes"}
		}
		f, err := fs[0].Open()
		if err != nil {
			return badRequest("invalid_form", "wasm: the file could not be read")
		}
		wasm, err = io.ReadAll(io.LimitReader(f, int64(limit)+1))
		f.Close()
		if err != nil {
			return badRequest("invalid_form", "wasm: the file could not be read")
		}
	} else {
		wasm = append([]byte(nil), c.Body()...)
	}
	if len(wasm) > limit {
		return &APIError{Status: fiber.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "wasm: over the limit of " + strconv.Itoa(limit) + " bytes"}
	}
	u := rollout.Upload{Kind: field("kind"), Name: field("name"), Wasm: wasm, Signature: field("signature"),
		DefaultTier: field("default_tier")}
	if u.Kind == "" {
		return badRequest("invalid", "kind: required (cache, route or compress)")
	}
	if v := field("config"); v != "" {
		u.Config = json.RawMessage(v)
	}
	if v := field("cases"); v != "" {
		u.Cases = json.RawMessage(v)
	}
	if v := field("deadline_ms"); v != "" {
		d, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return badRequest("invalid", "deadline_ms: want a number")
		}
		u.DeadlineMS = d
	}
	activate := false
	if v := field("activate"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("invalid", "activate: want true or false")
		}
		activate = b
	}
	rec, err := s.deps.Rollout.Push(c.UserContext(), u)
	if err != nil {
		return s.rolloutError(c, nil, err)
	}
	if activate {
		rec, err = s.deps.Rollout.Activate(c.UserContext(), rec.ID)
		if err != nil {
			return s.rolloutError(c, &rec, err)
		}
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"version": rec})
}

func (s *Server) uploadLimit() int {
	if s.cfg.AdminUploadLimit > 0 {
		return s.cfg.AdminUploadLimit
	}
	return DefaultAdminUploadLimit
}

func (s *Server) adminActivate(c *fiber.Ctx) error {
	id, err := adminID(c)
	if err != nil {
		return err
	}
	rec, err := s.deps.Rollout.Activate(c.UserContext(), id)
	if err != nil {
		return s.rolloutError(c, &rec, err)
	}
	return c.JSON(fiber.Map{"version": rec})
}

func (s *Server) adminRollback(c *fiber.Ctx) error {
	kind, err := rollout.KindOf(c.Params("kind"))
	if err != nil {
		return badRequest("invalid_kind", "kind: want cache, route or compress")
	}
	var to int64
	if v := c.Query("to"); v != "" {
		if to, err = strconv.ParseInt(v, 10, 64); err != nil || to <= 0 {
			return badRequest("invalid", "to: want a positive version id")
		}
	}
	rec, err := s.deps.Rollout.RollbackTo(c.UserContext(), kind, to)
	if err != nil {
		return s.rolloutError(c, &rec, err)
	}
	return c.JSON(fiber.Map{"version": rec})
}

func (s *Server) adminShadowStart(c *fiber.Ctx) error {
	id, err := adminID(c)
	if err != nil {
		return err
	}
	sample := 0.0
	if v := c.Query("sample"); v != "" {
		if sample, err = strconv.ParseFloat(v, 64); err != nil {
			return badRequest("invalid", "sample: want a number in (0, 1]")
		}
	}
	rec, err := s.deps.Rollout.StartShadow(c.UserContext(), id, sample)
	if err != nil {
		return s.rolloutError(c, &rec, err)
	}
	return c.JSON(fiber.Map{"version": rec})
}

func (s *Server) adminShadowStop(c *fiber.Ctx) error {
	kind, err := rollout.KindOf(c.Params("kind"))
	if err != nil {
		return badRequest("invalid_kind", "kind: want cache, route or compress")
	}
	st, err := s.deps.Rollout.StopShadow(c.UserContext(), kind)
	if err != nil {
		return s.rolloutError(c, nil, err)
	}
	return c.JSON(fiber.Map{"shadow": st})
}

func (s *Server) adminShadowList(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"shadows": s.deps.Rollout.Status().Shadows})
}

func (s *Server) adminStatus(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"instance": s.deps.Rollout.Status()})
}
