package alert

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/wingman-app/wingate/host/observe"
)

// Expressions compare signals (see observe.Signals) with thresholds and
// combine the comparisons:
//
//	route_latency_p95[1m] > 1s and route_requests[1m] >= 10
//	pool_utilisation > 80% or pool_health < 80
//	cache_hit_ratio[5m]{route!="/api/location"} < 85%
//
// A signal is a set of labelled samples; a comparison keeps the samples
// that satisfy it. "and" keeps the left side's samples whose labels the
// right side also has (a side without labels matches every sample), "or"
// takes the union; "and" binds tighter than "or", parentheses group.
// Every sample left is one alert. The window in brackets defaults to one
// minute and is at most five. Thresholds take a unit: % (divided by 100),
// ms, s, m (seconds, as the latency signals are).

// Source answers signal queries; *observe.Metrics is one.
type Source interface {
	Query(q observe.Query) ([]observe.Sample, error)
}

var _ Source = (*observe.Metrics)(nil)

// Expr is a parsed expression.
type Expr struct {
	src  string
	root node
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// Match is one sample an expression selected.
type Match struct {
	Labels map[string]string
	Value  float64
}

// Eval evaluates the expression against src.
func (e *Expr) Eval(src Source) ([]Match, error) {
	return e.root.eval(src)
}

type node interface {
	eval(Source) ([]Match, error)
}

type binary struct {
	op          string // "and" or "or"
	left, right node
}

func (b *binary) eval(src Source) ([]Match, error) {
	l, err := b.left.eval(src)
	if err != nil {
		return nil, err
	}
	r, err := b.right.eval(src)
	if err != nil {
		return nil, err
	}
	if b.op == "or" {
		out := slices.Clone(l)
		for _, m := range r {
			if !slices.ContainsFunc(out, func(x Match) bool { return maps.Equal(x.Labels, m.Labels) }) {
				out = append(out, m)
			}
		}
		return out, nil
	}
	var out []Match
	for _, m := range l {
		if slices.ContainsFunc(r, func(x Match) bool {
			return len(x.Labels) == 0 || len(m.Labels) == 0 || maps.Equal(x.Labels, m.Labels)
		}) {
			out = append(out, m)
		}
	}
	return out, nil
}

type matcher struct {
	label, value string
	negate       bool
}

type comparison struct {
	signal    string
	window    time.Duration
	matchers  []matcher
	op        string
	threshold float64
}

func (c *comparison) eval(src Source) ([]Match, error) {
	samples, err := src.Query(observe.Query{Signal: c.signal, Window: c.window})
	if err != nil {
		return nil, fmt.Errorf("alert: %s: %w", c.signal, err)
	}
	var out []Match
	for _, s := range samples {
		if !c.selects(s.Labels) || !compare(s.Value, c.op, c.threshold) {
			continue
		}
		out = append(out, Match{Labels: s.Labels, Value: s.Value})
	}
	return out, nil
}

func (c *comparison) selects(labels map[string]string) bool {
	for _, m := range c.matchers {
		if (labels[m.label] == m.value) == m.negate {
			return false
		}
	}
	return true
}

func compare(v float64, op string, t float64) bool {
	switch op {
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "<":
		return v < t
	case "<=":
		return v <= t
	case "==":
		return v == t
	case "!=":
		return v != t
	}
	return false
}

// ParseExpr parses an expression, checking its signals and windows.
func ParseExpr(src string) (*Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("alert: expression %q: unexpected %q at %d", src, t.text, t.pos)
	}
	return &Expr{src: src, root: root}, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tPunct
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := rune(src[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '_' || unicode.IsLetter(c):
			j := i
			for j < len(src) && (src[j] == '_' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], i})
			i = j
		case unicode.IsDigit(c) || c == '.' || c == '-':
			j := i + 1
			for j < len(src) && (unicode.IsDigit(rune(src[j])) || src[j] == '.' || unicode.IsLetter(rune(src[j])) || src[j] == '%') {
				j++
			}
			toks = append(toks, token{tNumber, src[i:j], i})
			i = j
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("alert: expression %q: unterminated string at %d", src, i)
			}
			s, err := strconv.Unquote(src[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("alert: expression %q: bad string at %d: %w", src, i, err)
			}
			toks = append(toks, token{tString, s, i})
			i = j + 1
		default:
			if i+1 < len(src) {
				if two := src[i : i+2]; two == ">=" || two == "<=" || two == "==" || two == "!=" {
					toks = append(toks, token{tPunct, two, i})
					i += 2
					continue
				}
			}
			if !strings.ContainsRune("<>=()[]{},", c) {
				return nil, fmt.Errorf("alert: expression %q: unexpected %q at %d", src, c, i)
			}
			toks = append(toks, token{tPunct, string(c), i})
			i++
		}
	}
	return append(toks, token{kind: tEOF, pos: len(src)}), nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) expect(text string) error {
	if t := p.next(); t.text != text || (t.kind != tPunct && t.kind != tIdent) {
		return fmt.Errorf("alert: expected %q at %d, found %q", text, t.pos, t.text)
	}
	return nil
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek().kind == tIdent && p.peek().text == "or" {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &binary{op: "or", left: l, right: r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.peek().kind == tIdent && p.peek().text == "and" {
		p.next()
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		l = &binary{op: "and", left: l, right: r}
	}
	return l, nil
}

func (p *parser) term() (node, error) {
	t := p.next()
	if t.kind == tPunct && t.text == "(" {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return n, nil
	}
	if t.kind != tIdent {
		return nil, fmt.Errorf("alert: expected a signal at %d, found %q", t.pos, t.text)
	}
	if _, ok := observe.Signals[t.text]; !ok {
		return nil, fmt.Errorf("alert: unknown signal %q at %d", t.text, t.pos)
	}
	c := &comparison{signal: t.text, window: time.Minute}
	if p.peek().text == "[" && p.peek().kind == tPunct {
		p.next()
		w := p.next()
		d, err := time.ParseDuration(w.text)
		if err != nil || d < time.Second || d > 5*time.Minute {
			return nil, fmt.Errorf("alert: window %q at %d: want a duration from 1s to 5m", w.text, w.pos)
		}
		c.window = d
		if err := p.expect("]"); err != nil {
			return nil, err
		}
	}
	if p.peek().text == "{" && p.peek().kind == tPunct {
		p.next()
		for {
			l := p.next()
			if l.kind != tIdent {
				return nil, fmt.Errorf("alert: expected a label at %d, found %q", l.pos, l.text)
			}
			op := p.next()
			if op.text != "=" && op.text != "!=" {
				return nil, fmt.Errorf("alert: expected = or != at %d, found %q", op.pos, op.text)
			}
			v := p.next()
			if v.kind != tString {
				return nil, fmt.Errorf("alert: expected a quoted value at %d, found %q", v.pos, v.text)
			}
			c.matchers = append(c.matchers, matcher{label: l.text, value: v.text, negate: op.text == "!="})
			sep := p.next()
			if sep.text == "}" {
				break
			}
			if sep.text != "," {
				return nil, fmt.Errorf("alert: expected , or } at %d, found %q", sep.pos, sep.text)
			}
		}
	}
	op := p.next()
	switch op.text {
	case ">", ">=", "<", "<=", "==", "!=":
	default:
		return nil, fmt.Errorf("alert: expected a comparison after %s at %d, found %q", c.signal, op.pos, op.text)
	}
	c.op = op.text
	n := p.next()
	if n.kind != tNumber {
		return nil, fmt.Errorf("alert: expected a threshold at %d, found %q", n.pos, n.text)
	}
	v, err := parseThreshold(n.text)
	if err != nil {
		return nil, fmt.Errorf("alert: threshold %q at %d: %w", n.text, n.pos, err)
	}
	c.threshold = v
	return c, nil
}

// parseThreshold reads a number with an optional unit: % (hundredths),
// or a duration (ms, s, m, ...) in seconds.
func parseThreshold(s string) (float64, error) {
	if strings.HasSuffix(s, "%") {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		return v / 100, err
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return v, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a number, a percentage or a duration: %w", err)
	}
	return d.Seconds(), nil
}
