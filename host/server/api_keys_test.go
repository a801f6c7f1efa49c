package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/keys"
)

// TestParseKeyBody: the admin body of a key is one JSON object with known
// fields; anything else is invalid_body, and values out of range are
// refused by name.
func TestParseKeyBody(t *testing.T) {
	for _, bad := range []string{`[]`, `{"name": "a"} {}`, `{"nmae": "a"}`, `{"rpm": "5"}`, `{"budget_usd": 1e999}`, "{\"name\": \"\xff\"", `null x`} {
		if _, err := parseKeyBody([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	kb, err := parseKeyBody([]byte(`{"name": "web", "models": ["auto"], "rpm": 5, "budget_usd": 2.5, "budget_period": "day"}`))
	if err != nil {
		t.Fatal(err)
	}
	var l keys.Limits
	if err := kb.apply(&l); err != nil || l.RPM != 5 || l.Budget != 2_500_000 || l.BudgetPeriod != keys.PeriodDay || len(l.Models) != 1 {
		t.Errorf("%+v %v", l, err)
	}
	for _, b := range []string{`{"budget_usd": -1}`, `{"budget_usd": 1000001}`} {
		kb, _ := parseKeyBody([]byte(b))
		var e *apierr.Error
		if err := kb.apply(&l); !errors.As(err, &e) || e.Code != "invalid_budget_usd" {
			t.Errorf("%s: %v", b, err)
		}
	}
}

// FuzzParseKeyBody: any body is parsed or refused with the table's
// error, never a panic; what is parsed and applied either validates or
// is refused by keys.Spec.Validate with the package's own words.
func FuzzParseKeyBody(f *testing.F) {
	for _, s := range []string{`{"name": "web", "models": ["auto"], "rpm": 5, "tpm": 9, "budget_usd": 2.5, "budget_period": "day", "expires_in": "1h", "metadata": {"a": 1}}`,
		`{}`, `{"models": null}`, `{"budget_usd": -0}`, `{"rpm": 99999999999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		kb, err := parseKeyBody(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("%q: %v", body, err)
			}
			return
		}
		spec := keys.Spec{Name: "n"}
		if kb.Name != nil {
			spec.Name = *kb.Name
		}
		if err := kb.apply(&spec.Limits); err != nil {
			return
		}
		if spec.BudgetPeriod == "" {
			spec.BudgetPeriod = keys.PeriodMonth
		}
		if err := spec.Validate(); err != nil && (!errors.Is(err, keys.ErrInvalid) || strings.Contains(err.Error(), "json")) {
			t.Fatalf("%q: %v", body, err)
		}
	})
}
