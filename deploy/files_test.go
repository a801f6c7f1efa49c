package deploy

import (
	"encoding/json"

	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The readers of the deployment files: just what the checks need, each
// failing the test on anything it does not understand.

// repoRoot is the repository's root: this package's parent.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		tb.Fatalf("no go.mod in %s", dir)
	}
	return dir
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
	Line int
}

// stage is one FROM and the instructions under it.
type stage struct {
	From, Name string
	Ins        []instruction
}

// parseDockerfile splits a Dockerfile into stages. Comments and blank
// lines are skipped; a line ending in a backslash continues.
func parseDockerfile(tb testing.TB, text string) []stage {
	tb.Helper()
	var stages []stage
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		start := i + 1
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			} else if len(f) != 1 {
				tb.Fatalf("Dockerfile:%d: FROM %q", start, in.Args)
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			tb.Fatalf("Dockerfile:%d: %s before FROM", start, in.Cmd)
		}
		stages[len(stages)-1].Ins = append(stages[len(stages)-1].Ins, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Ins {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// env returns the stage's ENV settings (key=value pairs, values unquoted
// words).
func (s stage) env(tb testing.TB) map[string]string {
	tb.Helper()
	m := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, kv := range shellWords(tb, in.Args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				tb.Fatalf("Dockerfile:%d: ENV %q: want key=value", in.Line, kv)
			}
			m[k] = v
		}
	}
	return m
}

// copyInto returns the destination of the stage's COPY whose sources
// are exactly from (and its flags).
func (s stage) copyInto(tb testing.TB, from string) (dest string, flags []string) {
	tb.Helper()
	for _, in := range s.all("COPY") {
		w := shellWords(tb, in.Args)
		var fl, paths []string
		for _, x := range w {
			if strings.HasPrefix(x, "--") {
				fl = append(fl, x)
			} else {
				paths = append(paths, x)
			}
		}
		if len(paths) == 2 && paths[0] == from {
			return paths[1], fl
		}
	}
	tb.Fatalf("the final stage has no COPY of %s", from)
	return "", nil
}

// execForm parses an instruction in exec form (a JSON array).
func execForm(tb testing.TB, in instruction) []string {
	tb.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.Args), &v); err != nil {
		tb.Fatalf("Dockerfile:%d: %s %s: want the exec form (a JSON array): %v", in.Line, in.Cmd, in.Args, err)
	}
	return v
}

// shellWords splits s as a POSIX shell splits a simple command without
// expansions: blanks separate words, single quotes keep everything,
// double quotes keep everything but a backslash before " or \. Anything
// else the shell would interpret ($, `, ;, |, &, <, >, *, ?) fails, so
// that a command run by the test means what it means to sh.
func shellWords(tb testing.TB, s string) []string {
	tb.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				tb.Fatalf("shell words %q: unterminated single quote", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				} else if s[i] == '$' || s[i] == '`' {
					tb.Fatalf("shell words %q: expansion in double quotes", s)
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				tb.Fatalf("shell words %q: unterminated double quote", s)
			}
			inWord = true
		case strings.IndexByte("$`;|&<>*?\\(){}", c) >= 0:
			tb.Fatalf("shell words %q: %q is not understood here", s, c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// readYAML decodes every document of the file at path.
func readYAML(tb testing.TB, path string) []map[string]any {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			tb.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		tb.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// at walks v by keys (map keys, or list indexes as numbers) and fails
// when the path is missing.
func at(tb testing.TB, v any, path ...any) any {
	tb.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				tb.Fatalf("%v: %v is not a mapping", path[:i+1], path[:i])
			}
			if v, ok = m[k]; !ok {
				tb.Fatalf("%v: no key %q", path[:i+1], k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				tb.Fatalf("%v: no item %d", path[:i+1], k)
			}
			v = l[k]
		}
	}
	return v
}

func str(tb testing.TB, v any, path ...any) string {
	tb.Helper()
	x := at(tb, v, path...)
	switch s := x.(type) {
	case string:
		return s
	case int:
		return strconv.Itoa(s)
	}
	tb.Fatalf("%v: %v (%T) is not a string", path, x, x)
	return ""
}

func num(tb testing.TB, v any, path ...any) int {
	tb.Helper()
	x := at(tb, v, path...)
	n, ok := x.(int)
	if !ok {
		tb.Fatalf("%v: %v (%T) is not an integer", path, x, x)
	}
	return n
}

func list(tb testing.TB, v any, path ...any) []any {
	tb.Helper()
	x := at(tb, v, path...)
	l, ok := x.([]any)
	if !ok {
		tb.Fatalf("%v: %v (%T) is not a list", path, x, x)
	}
	return l
}

// memBytes parses a Kubernetes memory quantity (Ki, Mi, Gi) or a Go
// GOMEMLIMIT (KiB, MiB, GiB, or bytes).
func memBytes(tb testing.TB, s string) int64 {
	tb.Helper()
	m := regexp.MustCompile(`^([0-9]+)(Ki|Mi|Gi|KiB|MiB|GiB)?$`).FindStringSubmatch(s)
	if m == nil {
		tb.Fatalf("memory quantity %q: want a number and Ki, Mi or Gi (KiB, MiB, GiB)", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch strings.TrimSuffix(m[2], "B") {
	case "Ki":
		n <<= 10
	case "Mi":
		n <<= 20
	case "Gi":
		n <<= 30
	}
	return n
}

// composeEnvValue resolves the compose interpolations the file uses:
// ${NAME:?message} (required from the caller's environment) becomes
// values[NAME]; anything else with a $ fails.
func composeEnvValue(tb testing.TB, s string, values map[string]string) string {
	tb.Helper()
	re := regexp.MustCompile(`^\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}$`)
	if m := re.FindStringSubmatch(s); m != nil {
		v, ok := values[m[1]]
		if !ok {
			tb.Fatalf("compose: no test value for ${%s}", m[1])
		}
		return v
	}
	if strings.Contains(s, "$") {
		tb.Fatalf("compose: interpolation %q not understood", s)
	}
	return s
}

// regexpAll returns the first group of every match of expr in s.
func regexpAll(expr, s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(expr).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}
