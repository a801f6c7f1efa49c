//go:build !wasip1

package sdk

import (
	"fmt"
	"os"
)

// logMessage writes to standard error when the policy runs natively
// (unit tests); inside the host it goes to the host's log.
func logMessage(level int32, msg string) {
	name := "INFO"
	switch {
	case level < levelInfo:
		name = "DEBUG"
	case level >= levelError:
		name = "ERROR"
	case level >= levelWarn:
		name = "WARN"
	}
	fmt.Fprintf(os.Stderr, "policy %s: %s\n", name, msg)
}
