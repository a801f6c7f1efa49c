package server

import (
	"context"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/store"
)

// storeAPIError maps a store error onto its HTTP answer, or nil when err
// is not a store error: ErrInvalid → 400 naming the field, ErrNotFound →
// 404, ErrConflict → 409, ErrUnavailable and deadline overruns → 503.
func storeAPIError(err error) *APIError {
	var fe *store.FieldError
	switch {
	case errors.As(err, &fe):
		return badRequest("invalid_"+fe.Field, fe.Field+": "+fe.Reason)
	case errors.Is(err, store.ErrInvalid):
		return badRequest("invalid", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, store.ErrConflict):
		return &APIError{fiber.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &APIError{fiber.StatusServiceUnavailable, "unavailable", "the database is unavailable, retry later"}
	}
	return nil
}

func (s *Server) storeRoutes() {
}
