package server

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Two listeners serve one route tree. The public listener (Serve) answers
// the API (/api, /v1), /healthz, /readyz with its status only and the
// landing page; the operators' listener (ServeOps) answers everything,
// the operators' paths included: /metrics, /dashboard and its event
// stream, /admin, and /readyz with each check's outcome. A request for an
// operators' path on the public listener is 404 not_found, as if the
// route did not exist.

// role is which listener a connection came through.
type role uint8

const (
	roleNone   role = iota // not through a listener of Serve or ServeOps (in-process tests)
	rolePublic             // Serve
	roleOps                // ServeOps
)

// opsPrefixes are the operators' paths: each, and everything under it.
var opsPrefixes = []string{pathMetrics, pathDashboard, "/admin"}

// isOpsPath reports whether path is an operators' path. The match is
// case-insensitive and ignores a trailing slash, as Fiber's routing does
// (it is neither case-sensitive nor strict), so no spelling of an
// operators' path reaches its route through the public listener.
func isOpsPath(path string) bool {
	for _, p := range opsPrefixes {
		if len(path) < len(p) || !strings.EqualFold(path[:len(p)], p) {
			continue
		}
		if len(path) == len(p) || path[len(p)] == '/' {
			return true
		}
	}
	return false
}

// roleListener marks every connection it accepts with its role.
type roleListener struct {
	net.Listener
	role role
}

func (l roleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &roleConn{Conn: c, role: l.role}, nil
}

// roleConn is a connection marked with the listener it came through.
type roleConn struct {
	net.Conn
	role role
}

// NetConn returns the connection under the mark (as crypto/tls does).
func (c *roleConn) NetConn() net.Conn { return c.Conn }

// connRole returns the role of the request's connection, looking through
// connections that wrap it.
func connRole(c *fiber.Ctx) role {
	conn := c.Context().Conn()
	for range 8 {
		switch x := conn.(type) {
		case *roleConn:
			return x.role
		case interface{ NetConn() net.Conn }:
			conn = x.NetConn()
		default:
			return roleNone
		}
	}
	return roleNone
}

// listenerGate is the first handler of every request: an operators' path
// through the public listener is not found.
func (s *Server) listenerGate(c *fiber.Ctx) error {
	if connRole(c) == rolePublic && isOpsPath(c.Path()) {
		return notFound("not found")
	}
	return c.Next()
}

// ServeOps accepts connections for the operators on ln until Shutdown.
// It serves alongside Serve, on the same server.
func (s *Server) ServeOps(ln net.Listener) error {
	return s.app.Server().Serve(roleListener{Listener: s.capped(ln), role: roleOps})
}

// readyCheckResult is one check of /readyz on the operators' listener.
type readyCheckResult struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// readyz answers {"status": "ok"} or 503 {"status": "unavailable"}:
// whether the server can serve. Through the operators' listener it adds
// "checks", each check's name and outcome with its error's text; to
// anyone else it never says why. A failing required check is logged with
// its error at warn level, an optional one at debug level.
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	details := connRole(c) == roleOps
	var checks []readyCheckResult
	ready := true
	for _, rc := range s.deps.Ready {
		err := rc.Check(ctx)
		if err != nil {
			if rc.Required {
				ready = false
				s.log.Warn("readyz: check failed", "check", rc.Name, "err", err)
			} else {
				s.log.Debug("readyz: optional check failed", "check", rc.Name, "err", err)
			}
		}
		if details {
			r := readyCheckResult{Name: rc.Name, Required: rc.Required, OK: err == nil}
			if err != nil {
				r.Error = err.Error()
			}
			if rc.Detail != nil {
				r.Detail = rc.Detail()
			}
			checks = append(checks, r)
		}
	}
	status, code := "ok", fiber.StatusOK
	if !ready {
		status, code = "unavailable", fiber.StatusServiceUnavailable
	}
	if details {
		return c.Status(code).JSON(fiber.Map{"status": status, "checks": checks})
	}
	return c.Status(code).JSON(fiber.Map{"status": status})
}
