package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/rollout"
)

// TestPrintActiveResources: wingate policy ls shows each active
// version's resource figures and tier.
func TestPrintActiveResources(t *testing.T) {
	var b strings.Builder
	printActive(&b, []rollout.ActiveStatus{{Kind: "cache", Version: "abc123def456", ExecTier: "interpreted", Calls: 1200, Timeouts: 3, Traps: 1,
		Quarantined: true, Resources: rollout.PolicyResources{CallP50Micros: 4, CallP99Micros: 20, CallMaxMicros: 2300,
			Recycles: 2, ForcedRecycles: 5, LogBytes: 4096, LogDropped: 77, MemoryPages: 40}}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", b.String())
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	want := map[string]string{"ACTIVE": "cache", "TIER": "interpreted", "CALLS": "1200", "P50_US": "4", "P99_US": "20", "MAX_US": "2300", "TIMEOUTS": "3",
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

// TestPolicyLsColumnsAlign: every row of `policy ls` starts each column
// where the header's starts, whatever a name or a reason holds (line
// breaks and tabs from a rejection's error included).
func TestPolicyLsColumnsAlign(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []rollout.Record{
		{ID: 1, Kind: "route", Name: "myroute", Digest: "0123456789abcdef0123", Status: rollout.StatusActive, CreatedAt: at},
		{ID: 12345, Kind: "compress", Name: "a-much-longer-policy-name", Digest: "fedcba9876543210", Status: rollout.StatusRejected,
			CreatedAt: at, Reason: "self-test: case 3\n\tgot \"standard\"\twant \"economy\""},
		{ID: 7, Kind: "cache", Name: "x\ty", Digest: "00ff", Status: rollout.StatusInactive, CreatedAt: at, Signature: "sig", Reason: "rolled back"},
	}
	var b strings.Builder
	printVersions(&b, recs)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 1+len(recs) {
		t.Fatalf("%d lines for %d versions:\n%s", len(lines), len(recs), b.String())
	}
	header := lines[0]
	for _, col := range []string{"KIND", "NAME", "VERSION", "STATUS", "CREATED", "SIGNED", "REASON"} {
		start := strings.Index(header, col)
		for _, l := range lines[1:] {
			if start >= len(l) || l[start] == ' ' || l[start-1] != ' ' {
				t.Errorf("column %s (offset %d) misaligned in %q\n%s", col, start, l, b.String())
			}
		}
	}
}
