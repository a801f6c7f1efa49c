package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

var (
	linkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	spanRe = regexp.MustCompile("`([^`\n]+)`")
	// A repository path: it starts with one of the tree's top folders.
	pathRe = regexp.MustCompile(`^(?:\./)?(?:host|sdk|plugins|policies|cmd|docs|\.ci)(?:/[A-Za-z0-9_.\-]+)*/?$`)
)

// created lists the paths a tutorial has the reader create, and the
// prefix of modules the build writes (go generate ./policies).
var created = []string{"plugins/myroute", "policies/myroute.wasm"}

// markdownFiles returns every Markdown file of the repository.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// slug is GitHub's anchor for a heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ' || r == '-':
			b.WriteRune('-')
		case r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// prose returns the file's lines outside fenced code blocks, and its
// headings' anchors.
func prose(b []byte) (lines []string, anchors map[string]bool) {
	anchors = map[string]bool{}
	fenced := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if strings.HasPrefix(l, "#") {
			anchors[slug(strings.TrimLeft(l, "#"))] = true
		}
		lines = append(lines, l)
	}
	return lines, anchors
}

func exists(root, rel string) bool {
	rel = strings.TrimPrefix(strings.TrimSuffix(rel, "/"), "./")
	for _, c := range created {
		if rel == c || strings.HasPrefix(rel, c+"/") {
			return true
		}
	}
	if strings.HasPrefix(rel, "policies/") && strings.HasSuffix(rel, ".wasm") {
		// Built by go generate ./policies from plugins/<name>.
		return exists(root, "plugins/"+strings.TrimSuffix(strings.TrimPrefix(rel, "policies/"), ".wasm"))
	}
	_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
	return err == nil
}

// TestMarkdownLinksAndPaths: every relative link of every Markdown file
// resolves (with its anchor, when it has one), and every repository path
// named in a code span exists.
func TestMarkdownLinksAndPaths(t *testing.T) {
	root := testkit.RepoRoot(t)
	files := markdownFiles(t, root)
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	anchorsOf := map[string]map[string]bool{}
	linesOf := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		linesOf[f], anchorsOf[f] = prose(b)
	}
	links, paths := 0, 0
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for i, l := range linesOf[f] {
			for _, m := range linkRe.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				file, anchor, _ := strings.Cut(target, "#")
				dest := f
				if file != "" {
					dest = filepath.Join(filepath.Dir(f), filepath.FromSlash(file))
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link %q: %s does not exist", rel, i+1, target, file)
						continue
					}
				}
				if anchor != "" {
					a, ok := anchorsOf[dest]
					if !ok {
						t.Errorf("%s:%d: link %q: anchor in a file that is not Markdown", rel, i+1, target)
					} else if !a[anchor] {
						t.Errorf("%s:%d: link %q: no heading with anchor #%s", rel, i+1, target, anchor)
					}
				}
			}
			for _, m := range spanRe.FindAllStringSubmatch(l, -1) {
				p := strings.TrimRight(m[1], ".,;:")
				if !pathRe.MatchString(p) {
					continue
				}
				paths++
				if !exists(root, p) {
					t.Errorf("%s:%d: `%s` names a path that does not exist", rel, i+1, p)
				}
			}
		}
	}
	t.Logf("%d Markdown files, %d relative links, %d repository paths checked", len(files), links, paths)
	if links == 0 || paths == 0 {
		t.Fatal("nothing was checked: the patterns no longer match the documents")
	}
}

// TestCheckerCatches: the checks find a broken link, anchor and path.
func TestCheckerCatches(t *testing.T) {
	root := testkit.RepoRoot(t)
	if exists(root, "host/no_such_package/x.go") || !exists(root, "host/policy/doc.go") || !exists(root, "plugins/cache") {
		t.Fatal("exists is wrong")
	}
	if !exists(root, "policies/cache.wasm") || exists(root, "policies/nosuch.wasm") {
		t.Fatal("built modules are judged wrong")
	}
	if !pathRe.MatchString("host/policy/doc.go") || pathRe.MatchString("/api/users/:id") || pathRe.MatchString("plugins/<name>") {
		t.Fatal("pathRe is wrong")
	}
	_, a := prose([]byte("# One error table\n```\n# not a heading\n```\n## Offline evaluation JSON\n"))
	if !a["one-error-table"] || !a["offline-evaluation-json"] || a["not-a-heading"] {
		t.Fatalf("anchors = %v", a)
	}
}
