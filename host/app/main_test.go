package app

import (
	"fmt"
	"os"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// TestMain doubles as the bare Fiber server of the wrk comparison
// (BenchmarkServeVsBareFiber): with WINGATE_BARE_FIBER_ADDR set, the test
// binary serves the bytes of the file WINGATE_BARE_FIBER_BODY on
// /api/challenges and nothing else, in its own process like `wingate
// serve`.
func TestMain(m *testing.M) {
	if addr := os.Getenv("WINGATE_BARE_FIBER_ADDR"); addr != "" {
		body, err := os.ReadFile(os.Getenv("WINGATE_BARE_FIBER_BODY"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Get("/api/challenges", func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(body)
		})
		if err := app.Listen(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
