package observe

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestPolicyResourceMetrics: the runtime's resource events reach
// /metrics as the call-time histogram (with microsecond buckets) and the
// guest output counter.
func TestPolicyResourceMetrics(t *testing.T) {
	m, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	obs, ok := m.PolicyObserver().(policy.ResourceObserver)
	if !ok {
		t.Fatal("the policy observer does not take resource events")
	}
	obs.PolicyCall(abi.KindCache, "cache", "abc123", 3*time.Microsecond, policy.OutcomeOK)
	obs.PolicyCall(abi.KindCache, "cache", "abc123", 7*time.Millisecond, policy.OutcomeTimeout)
	obs.GuestOutput("cache", "abc123", 100, 0)
	obs.GuestOutput("cache", "abc123", 0, 5000)
	obs.PolicyMemory("cache", "abc123", 2<<20)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		`wingate_policy_call_duration_seconds_bucket{outcome="ok",policy_kind="cache",policy_name="cache",policy_version="abc123",le="2.7e-06"} 0`,
		`wingate_policy_call_duration_seconds_bucket{outcome="ok",policy_kind="cache",policy_name="cache",policy_version="abc123",le="3.3e-06"} 1`,
		`wingate_policy_call_duration_seconds_count{outcome="timeout",policy_kind="cache",policy_name="cache",policy_version="abc123"} 1`,
		`wingate_policy_log_bytes_total{policy_name="cache",policy_version="abc123",result="written"} 100`,
		`wingate_policy_log_bytes_total{policy_name="cache",policy_version="abc123",result="dropped"} 5000`,
		`wingate_policy_memory_bytes{policy_name="cache",policy_version="abc123"} 2.097152e+06`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "wingate_policy_call") || strings.Contains(l, "wingate_policy_log") {
				t.Log(l)
			}
		}
	}
}
