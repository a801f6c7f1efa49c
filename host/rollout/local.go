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
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wingman-app/wingate/host/policy"
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
// set, the directory seeding the shared store). Every file is read under
// the limits of a push (policy.ReadDirFile: regular files only, no link
// out of the directory, a size cap), and the entry's settings are checked
// as a push's are. Entries that fail are reported in the joined error,
// and each distinct failure of an entry is logged once; the others still
// go ahead. policy.ErrNoPoliciesFile (wrapped) means there is no
// policies file.
func (m *Manager) ImportDir(ctx context.Context, dir string, skipActive bool) error {
	pf, err := policy.ReadPoliciesFile(dir)
	if err != nil {
		m.dirError(policy.PoliciesFileName, err)
		return err
	}
	m.dirError(policy.PoliciesFileName, nil)
	recs, err := m.store.List(ctx)
	if err != nil {
		return storeFailed("list versions", err)
	}
	// Each entry is stored in turn (in the file's order, so that its
	// records are numbered so), then the kinds are activated at once:
	// their checks are independent, and at a server's start they are
	// what it waits for (the kinds of a bundle share the module's
	// preparation: policy.Runtime.Load).
	errs := make([]error, len(pf.Policies))
	ids := make([]int64, len(pf.Policies))
	skipped := make([]bool, len(pf.Policies))
	for i, e := range pf.Policies {
		cur, hasActive := activeOf(recs, e.Kind)
		if skipped[i] = skipActive && hasActive; skipped[i] {
			continue
		}
		ids[i], errs[i] = m.pushEntry(ctx, dir, e, recs, cur, hasActive)
	}
	var wg sync.WaitGroup
	for i := range pf.Policies {
		if ids[i] == 0 || errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Activate(ctx, ids[i])
		}()
	}
	wg.Wait()
	var failed []error
	for i, e := range pf.Policies {
		if skipped[i] {
			continue
		}
		m.dirError(e.Kind, errs[i])
		if errs[i] != nil {
			failed = append(failed, fmt.Errorf("rollout: policy %q: %w", e.Name, errs[i]))
		}
	}
	return errors.Join(failed...)
}

// pushEntry stores the version entry e of the policy directory dir
// describes and returns its id, or 0 when there is nothing to activate
// (the same version is active, or was refused already).
func (m *Manager) pushEntry(ctx context.Context, dir string, e policy.PolicyEntry, recs []Record, cur Record, hasActive bool) (int64, error) {
	wasm, err := policy.ReadDirFile(dir, e.File, policy.MaxModuleBytes)
	if err != nil {
		return 0, err
	}
	var sig []byte
	if _, err := os.Lstat(filepath.Join(dir, e.File+".sig")); err == nil {
		if sig, err = policy.ReadDirFile(dir, e.File+".sig", policy.MaxSignatureBytes); err != nil {
			return 0, err
		}
	}
	cases, err := readCases(dir, filepath.Join(casesDirName, e.Name))
	if err != nil {
		return 0, err
	}
	u := Upload{Kind: e.Kind, Name: e.Name, Wasm: wasm, Config: e.Config, DeadlineMS: e.DeadlineMS,
		DefaultTier: e.DefaultTier, Signature: string(sig), Cases: cases, Source: "dir"}
	if hasActive && sameVersion(cur, u) {
		return 0, nil
	}
	if prev, ok := latestSame(recs, u); ok && prev.Status == StatusRejected {
		return 0, nil // the same bytes were refused already; wait for a change
	}
	rec, err := m.Push(ctx, u)
	if err != nil {
		// A refusal before the version is stored (a limit) names the
		// file, as a refusal to read it does.
		return 0, fmt.Errorf("policy directory: %s: %w", e.File, err)
	}
	return rec.ID, nil
}

// dirError logs err for the policy directory's entry key (a kind, or the
// policies file) unless it is the error last logged for it; nil forgets
// it.
func (m *Manager) dirError(key string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil || errors.Is(err, policy.ErrNoPoliciesFile) {
		delete(m.dirErrs, key)
		return
	}
	msg := err.Error()
	if m.dirErrs[key] == msg {
		return
	}
	m.dirErrs[key] = msg
	if failed(err) {
		return // reject logged it
	}
	m.log.Warn("rollout: policy directory entry not activated; its kind keeps the version it serves", "entry", key, "err", msg)
}

func sameVersion(r Record, u Upload) bool {
	return r.Digest == policy.ModuleSHA256(u.Wasm) && bytes.Equal(compactJSON(r.Config), compactJSON(u.Config)) &&
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

// readCases merges the case files rel/*.json of the policy directory dir
// (absent: none) into one array, each file read under the directory's
// limits and all of them together under policy.MaxCasesBytes.
func readCases(dir, rel string) (json.RawMessage, error) {
	files, err := filepath.Glob(filepath.Join(dir, rel, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, nil
	}
	sort.Strings(files)
	var all []json.RawMessage
	left := int64(policy.MaxCasesBytes)
	for _, f := range files {
		name := filepath.Join(rel, filepath.Base(f))
		b, err := policy.ReadDirFile(dir, name, left)
		if err != nil {
			var le *policy.LimitError
			if errors.As(err, &le) {
				return nil, &policy.DirFileError{Path: filepath.ToSlash(name),
					Problem: fmt.Sprintf("over the limit of %d bytes for a version's case files together; refused", policy.MaxCasesBytes),
					Err:     &policy.LimitError{Field: "cases", Limit: policy.MaxCasesBytes, Unit: "bytes", Got: float64(policy.MaxCasesBytes-left) + le.Got}}
			}
			return nil, err
		}
		left -= int64(len(b))
		var cs []json.RawMessage
		if json.Unmarshal(b, &cs) != nil {
			return nil, fmt.Errorf("case file %s: want a JSON array of cases", filepath.ToSlash(name))
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
				// ImportDir logs each entry's failure once.
				_ = m.ImportDir(m.ctx, dir, false)
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
