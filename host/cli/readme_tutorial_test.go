package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

// The README's "Write your first policy" section, Go and Rust, run as
// written: the files it asks to create are created from its own code
// blocks, each command of its sh blocks runs from the repository root,
// and an output line shown after a command must be what it prints. The
// Go tutorial runs in a fresh clone with a server of its own
// (readme_clone_test.go); here the Rust one runs in the repository,
// without the server's steps; --watch commands run until their first
// verdict.

type readmeBlock struct {
	lang  string
	lines []string
	// after is the prose line just before the block.
	after string
}

func readmeSection(t *testing.T, start, end string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, start)
	j := strings.Index(s[i+1:], end)
	if i < 0 || j < 0 {
		t.Fatalf("README: section %q to %q not found", start, end)
	}
	var out []readmeBlock
	var cur *readmeBlock
	prose := ""
	sc := bufio.NewScanner(strings.NewReader(s[i : i+1+j]))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(trimmed, "```"), after: prose}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, strings.TrimPrefix(line, "   "))
		case trimmed != "":
			prose = trimmed
		}
	}
	return out
}

func isCommand(line string) bool {
	for _, p := range []string{"go ", "GOOS=", "echo ", "(cd "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// runReadmeCommands runs the commands of the sh blocks in order.
func runReadmeCommands(t *testing.T, blocks []readmeBlock) int {
	t.Helper()
	ran := 0
	for _, b := range blocks {
		if b.lang != "sh" {
			continue
		}
		for i := 0; i < len(b.lines); i++ {
			line := b.lines[i]
			if !isCommand(line) || strings.Contains(line, "policy push") || strings.Contains(line, "policy ls") || strings.Contains(line, "policy rollback") {
				continue
			}
			var want []string
			for k := i + 1; k < len(b.lines) && !isCommand(b.lines[k]) && strings.TrimSpace(b.lines[k]) != ""; k++ {
				want = append(want, b.lines[k])
			}
			timeout := 10 * time.Minute
			watch := strings.Contains(line, "--watch")
			if watch {
				timeout = 5 * time.Minute
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			cmd := exec.CommandContext(ctx, "sh", "-c", line)
			cmd.Dir = repoRoot
			if watch {
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				// go run's child must end with the shell: a process group.
				setProcessGroup(cmd)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(out)
				if !sc.Scan() || !strings.Contains(sc.Text(), "ok   ") {
					t.Errorf("%s: first verdict %q", line, sc.Text())
				}
				killProcessGroup(cmd)
				cmd.Wait()
				cancel()
				ran++
				continue
			}
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("README command failed: %s\n%s\n%v", line, out, err)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("README command %s: output lacks %q:\n%s", line, w, out)
				}
			}
			t.Logf("ran: %s", line)
			ran++
		}
	}
	return ran
}

// TestReadmeRustTutorial checks that the README shows the example's
// source as it is and runs the Rust tutorial's commands.
func TestReadmeRustTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("builds policies; skipped with -short")
	}
	buildtest.RequireRust(t)
	blocks := readmeSection(t, "### Write your first policy in Rust", "## Configuration")
	src, err := os.ReadFile(filepath.Join(repoRoot, "sdk", "rust", "examples", "route", "src", "lib.rs"))
	if err != nil {
		t.Fatal(err)
	}
	shown := false
	for _, b := range blocks {
		if b.lang == "rust" {
			shown = true
			if got := strings.Join(b.lines, "\n") + "\n"; got != string(src) {
				t.Errorf("README's Rust example differs from sdk/rust/examples/route/src/lib.rs")
			}
		}
	}
	if !shown {
		t.Fatal("README: no Rust example")
	}
	if n := runReadmeCommands(t, blocks); n != 5 {
		t.Fatalf("ran %d commands; the Rust tutorial has 5", n)
	}
}
