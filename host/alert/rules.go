package alert

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// defaultRules is the rules file shipped with the binary.
//
//go:embed default_rules.json
var defaultRules []byte

// Severities, from the most urgent.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Rule is one alerting rule.
type Rule struct {
	// Name identifies the rule; unique in a file.
	Name string `json:"name"`
	// Expr selects what is wrong; see the expression syntax in expr.go.
	Expr *Expr `json:"-"`
	// For is how long the expression must hold before the alert fires
	// (pending until then); zero fires at once.
	For time.Duration `json:"-"`
	// KeepFiringFor is how long a firing alert stays firing after the
	// expression stops holding, so that a flapping signal does not
	// resolve and fire again.
	KeepFiringFor time.Duration `json:"-"`
	// Severity is critical, warning or info.
	Severity string `json:"severity"`
	// Summary is the human-readable line; {{label}} is replaced by the
	// alert's label, {{value}} by its value, {{pct}} by the value as a
	// percentage and {{ms}} by the value (seconds) in milliseconds.
	Summary string `json:"summary"`
}

// ruleJSON is a rule as written in a rules file.
type ruleJSON struct {
	Name          string `json:"name"`
	Expr          string `json:"expr"`
	For           string `json:"for"`
	KeepFiringFor string `json:"keep_firing_for"`
	Severity      string `json:"severity"`
	Summary       string `json:"summary"`
}

// MarshalJSON writes the rule as in a rules file.
func (r Rule) MarshalJSON() ([]byte, error) {
	return json.Marshal(ruleJSON{Name: r.Name, Expr: r.Expr.String(), For: r.For.String(),
		KeepFiringFor: r.KeepFiringFor.String(), Severity: r.Severity, Summary: r.Summary})
}

// DefaultRules returns the shipped rules: P95 of any route over 1 s, cache
// hit ratio under 85% (with at least 100 lookups in 5 minutes), pool
// utilisation over 80% or health under 80, Redis down, policy fallback
// rate over 1%, AI cost saving under 40%.
func DefaultRules() []Rule {
	rules, err := ParseRules(defaultRules)
	if err != nil {
		panic("alert: default rules: " + err.Error())
	}
	return rules
}

// LoadRules reads a rules file: {"rules": [{"name", "expr", "for",
// "keep_firing_for", "severity", "summary"}, ...]}.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("alert: rules: %w", err)
	}
	rules, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("alert: rules %s: %w", path, err)
	}
	return rules, nil
}

// ParseRules parses and checks the rules in a rules file's content.
func ParseRules(b []byte) ([]Rule, error) {
	var f struct {
		Rules []ruleJSON `json:"rules"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("alert: rules: %w", err)
	}
	if len(f.Rules) == 0 {
		return nil, errors.New("alert: rules: no rules")
	}
	seen := map[string]bool{}
	var out []Rule
	for i, rj := range f.Rules {
		r, err := rj.rule()
		if err != nil {
			return nil, fmt.Errorf("alert: rule %d (%s): %w", i, rj.Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("alert: rule %d: duplicate name %q", i, r.Name)
		}
		seen[r.Name] = true
		out = append(out, r)
	}
	return out, nil
}

func (rj ruleJSON) rule() (Rule, error) {
	r := Rule{Name: rj.Name, Severity: rj.Severity, Summary: rj.Summary}
	if r.Name == "" {
		return r, errors.New("name: empty")
	}
	switch r.Severity {
	case SeverityCritical, SeverityWarning, SeverityInfo:
	case "":
		r.Severity = SeverityWarning
	default:
		return r, fmt.Errorf("severity: %q is not critical, warning or info", r.Severity)
	}
	e, err := ParseExpr(rj.Expr)
	if err != nil {
		return r, fmt.Errorf("expr: %w", err)
	}
	r.Expr = e
	for _, d := range []struct {
		name string
		src  string
		dst  *time.Duration
	}{{"for", rj.For, &r.For}, {"keep_firing_for", rj.KeepFiringFor, &r.KeepFiringFor}} {
		if d.src == "" {
			continue
		}
		v, err := time.ParseDuration(d.src)
		if err != nil || v < 0 {
			return r, fmt.Errorf("%s: %q is not a duration", d.name, d.src)
		}
		*d.dst = v
	}
	return r, nil
}

var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// summarise fills the rule's summary template for one alert.
func (r *Rule) summarise(labels map[string]string, v float64) string {
	if r.Summary == "" {
		return r.Name
	}
	return placeholder.ReplaceAllStringFunc(r.Summary, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		switch name {
		case "value":
			return strconv.FormatFloat(v, 'g', 4, 64)
		case "pct":
			return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
		case "ms":
			return strconv.FormatFloat(v*1000, 'f', 0, 64) + " ms"
		}
		if l, ok := labels[name]; ok {
			return l
		}
		return m
	})
}
