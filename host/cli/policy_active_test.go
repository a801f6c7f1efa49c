package cli

import (
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/rollout"
)

// TestPrintActiveResources: wingate policy ls shows each active
// version's resource figures.
func TestPrintActiveResources(t *testing.T) {
	var b strings.Builder
	printActive(&b, []rollout.ActiveStatus{{Kind: "cache", Version: "abc123def456", Calls: 1200, Timeouts: 3, Traps: 1,
		Quarantined: true, Resources: rollout.PolicyResources{CallP50Micros: 4, CallP99Micros: 20, CallMaxMicros: 2300,
			Recycles: 2, ForcedRecycles: 5, LogBytes: 4096, LogDropped: 77, MemoryPages: 40}}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", b.String())
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	want := map[string]string{"ACTIVE": "cache", "CALLS": "1200", "P50_US": "4", "P99_US": "20", "MAX_US": "2300", "TIMEOUTS": "3",
		"TRAPS": "1", "RECYCLES": "2", "FORCED": "5", "LOG_BYTES": "4096", "LOG_DROPPED": "77", "PAGES": "40", "QUARANTINED": "true"}
	if len(head) != len(row) {
		t.Fatalf("header %v, row %v", head, row)
	}
	for i, h := range head {
		if w, ok := want[h]; ok && row[i] != w {
			t.Errorf("%s = %s, want %s", h, row[i], w)
		}
		delete(want, h)
	}
	if len(want) != 0 {
		t.Errorf("columns missing: %v", want)
	}
}
