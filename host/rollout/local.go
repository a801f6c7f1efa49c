package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Bundled files of the policy directory, beside policies.json:
//
//	<file>.sig                 detached signature of the module <file>
//	cases/<name>/*.json        case files run before <name> is activated
const casesDirName = "cases"

// ImportDir reads dir/policies.json and, for each entry whose module,
// configuration or settings differ from the version active for its kind,
// stores a new version and activates it through the pipeline. When
// skipActive is true, kinds that already have an active version in the
// store are left alone (a fleet member starting on the store's active
// set). Entries that fail are reported in the joined error; the others
// still go ahead. policy.ErrNoPoliciesFile (wrapped) means there is no
// policies file.
func (m *Manager) ImportDir(ctx context.Context, dir string, skipActive bool) error {
	pf, err := policy.ReadPoliciesFile(dir)
	if err != nil {
		return err
	}
	recs, err := m.store.List(ctx)
	if err != nil {
		return fmt.Errorf("rollout: list versions: %w", err)
	}
	var errs []error
	for _, e := range pf.Policies {
		cur, hasActive := activeOf(recs, e.Kind)
		if skipActive && hasActive {
			continue
		}
		wasm, err := os.ReadFile(filepath.Join(dir, e.File))
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout: policy %q: %w", e.Name, err))
			continue
		}
		sig, _ := os.ReadFile(filepath.Join(dir, e.File+".sig"))
		cases, err := readCases(filepath.Join(dir, casesDirName, e.Name))
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout: policy %q: %w", e.Name, err))
			continue
		}
		u := Upload{Kind: e.Kind, Name: e.Name, Wasm: wasm, Config: e.Config, DeadlineMS: e.DeadlineMS,
			DefaultTier: e.DefaultTier, Signature: string(sig), Cases: cases, Source: "dir"}
		if hasActive && sameVersion(cur, u) {
			continue
		}
		if prev, ok := latestSame(recs, u); ok && prev.Status == StatusRejected {
			continue // the same bytes were refused already; wait for a change
		}
		rec, err := m.Push(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout: policy %q: %w", e.Name, err))
			continue
		}
		if _, err := m.Activate(ctx, rec.ID); err != nil {
			errs = append(errs, fmt.Errorf("rollout: policy %q: %w", e.Name, err))
		}
	}
	return errors.Join(errs...)
}

func sameVersion(r Record, u Upload) bool {
	return r.Digest == digestHex(u.Wasm) && bytes.Equal(compactJSON(r.Config), compactJSON(u.Config)) &&
		r.DeadlineMS == u.DeadlineMS && r.DefaultTier == u.DefaultTier && r.Name == u.Name &&
		strings.TrimSpace(r.Signature) == strings.TrimSpace(u.Signature) && bytes.Equal(compactJSON(r.Cases), compactJSON(u.Cases))
}

func latestSame(recs []Record, u Upload) (Record, bool) {
	for _, r := range recs { // newest first
		if r.Kind == u.Kind && sameVersion(r, u) {
			return r, true
		}
	}
	return Record{}, false
}

func compactJSON(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

// readCases merges the case files of dir (absent: none) into one array.
func readCases(dir string) (json.RawMessage, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, nil
	}
	sort.Strings(files)
	var all []json.RawMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var cs []json.RawMessage
		if err := json.Unmarshal(b, &cs); err != nil {
			return nil, fmt.Errorf("case file %s: %w", f, err)
		}
		all = append(all, cs...)
	}
	return json.Marshal(all)
}

// WatchDir watches dir and re-imports it (ImportDir) when policies.json, a
// module, a signature or a case file changes, after changes settle for
// settle (200 ms when zero). It returns once the watch is set up; the
// watch ends with Close.
func (m *Manager) WatchDir(dir string, settle time.Duration) error {
	if settle <= 0 {
		settle = 200 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rollout: watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("rollout: watch %s: %w", dir, err)
	}
	if cases := filepath.Join(dir, casesDirName); dirExists(cases) {
		_ = w.Add(cases)
		subs, _ := os.ReadDir(cases)
		for _, s := range subs {
			if s.IsDir() {
				_ = w.Add(filepath.Join(cases, s.Name()))
			}
		}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer w.Close()
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-m.ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !relevant(ev.Name) || ev.Op == fsnotify.Chmod {
					continue
				}
				if timer == nil {
					timer = time.NewTimer(settle)
				} else {
					timer.Reset(settle)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				m.log.Warn("rollout: policy directory watch", "dir", dir, "err", err)
			case <-fire:
				fire = nil
				if err := m.ImportDir(m.ctx, dir, false); err != nil {
					m.log.Warn("rollout: policy directory changed; some versions were not activated", "dir", dir, "err", err)
				}
			}
		}
	}()
	return nil
}

func relevant(name string) bool {
	base := filepath.Base(name)
	return base == policy.PoliciesFileName || strings.HasSuffix(base, ".wasm") || strings.HasSuffix(base, ".sig") ||
		(strings.HasSuffix(base, ".json") && strings.Contains(filepath.ToSlash(name), "/"+casesDirName+"/"))
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// KindOf parses a kind name, for callers outside the package.
func KindOf(s string) (abi.Kind, error) {
	k, ok := abi.ParseKind(s)
	if !ok {
		return 0, invalid("kind", "want cache, route or compress")
	}
	return k, nil
}
