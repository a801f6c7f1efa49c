package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits of a policy version's files and settings. They are the same
// whichever way a version arrives: pushed through the admin API
// (host/rollout Manager.Push), read from the policy directory (LoadDir,
// and the rollout's ImportDir, which in fleet mode seeds the shared
// version store), so a module refused one way is refused the other.
const (
	// MaxModuleBytes caps a module (.wasm) file or upload: 32 MiB.
	MaxModuleBytes = 32 << 20
	// MaxPoliciesFileBytes caps policies.json: 1 MiB.
	MaxPoliciesFileBytes = 1 << 20
	// MaxConfigBytes caps a version's configuration (JSON): 1 MiB.
	MaxConfigBytes = 1 << 20
	// MaxCasesBytes caps a version's case files, all together: 4 MiB.
	MaxCasesBytes = 4 << 20
	// MaxCases caps the number of cases run before activation.
	MaxCases = 1000
	// MaxSignatureBytes caps a detached signature (88 characters when
	// well formed).
	MaxSignatureBytes = 1024
	// MaxNameBytes caps a policy name; names are letters, digits, '.',
	// '_' and '-' (they appear in logs, metrics and the
	// X-Policy-Version header).
	MaxNameBytes = 128
	// MaxDeadlineMS is the ceiling of a per-call deadline (deadline_ms):
	// 10 s.
	MaxDeadlineMS = 10_000
	// MaxInstancesCeiling caps min_instances and max_instances.
	MaxInstancesCeiling = 256
)

// LimitError is a setting or a file over one of the limits above. Field
// names the setting (deadline_ms, config, wasm, ...) or the file.
type LimitError struct {
	Field string
	Limit float64
	Unit  string // "bytes", "ms", "cases", ...
	Got   float64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %s %s is over the limit of %s %s", e.Field, num(e.Got), e.Unit, num(e.Limit), e.Unit)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// CheckDeadlineMS checks a deadline_ms setting: 0 (the kind's default)
// up to MaxDeadlineMS.
func CheckDeadlineMS(ms float64) error {
	switch {
	case ms != ms || ms < 0: // NaN or negative
		return fmt.Errorf("deadline_ms %v: want 0 (the default) to %d", ms, MaxDeadlineMS)
	case ms > MaxDeadlineMS:
		return &LimitError{Field: "deadline_ms", Limit: MaxDeadlineMS, Unit: "ms", Got: ms}
	}
	return nil
}

// CheckInstances checks min_instances and max_instances: 0 (the
// defaults) up to MaxInstancesCeiling, min no more than max.
func CheckInstances(minN, maxN int) error {
	switch {
	case minN < 0 || maxN < 0 || (maxN > 0 && minN > maxN):
		return errors.New("min_instances/max_instances: want 0 <= min <= max")
	case minN > MaxInstancesCeiling:
		return &LimitError{Field: "min_instances", Limit: MaxInstancesCeiling, Unit: "instances", Got: float64(minN)}
	case maxN > MaxInstancesCeiling:
		return &LimitError{Field: "max_instances", Limit: MaxInstancesCeiling, Unit: "instances", Got: float64(maxN)}
	}
	return nil
}

// CheckName checks a policy name: 1 to MaxNameBytes letters, digits,
// '.', '_' or '-'.
func CheckName(name string) error {
	if len(name) > MaxNameBytes {
		return &LimitError{Field: "name", Limit: MaxNameBytes, Unit: "bytes", Got: float64(len(name))}
	}
	if name == "" || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("name %q: want 1 to %d letters, digits, '.', '_' or '-'", name, MaxNameBytes)
	}
	return nil
}

// DirFileError is a file of the policy directory refused before or while
// reading it: Path is relative to the directory, Problem says why.
type DirFileError struct {
	Path    string
	Problem string
	Err     error // the cause, when a system call failed; not in Error
}

func (e *DirFileError) Error() string { return "policy directory: " + e.Path + ": " + e.Problem }

func (e *DirFileError) Unwrap() error { return e.Err }

// ReadDirFile reads the file rel of the policy directory dir, refusing
// what the directory must not serve, before reading a byte of it:
//
//   - anything but a regular file (a FIFO, a device, a socket, a
//     directory) — never opened in a way that can block: the path is
//     checked with lstat first, opened non-blocking and without following
//     a final symlink, and checked again with fstat;
//   - a path that leads out of the directory, through a symlink anywhere
//     on it (a symlink that resolves to a regular file inside the
//     directory is followed: `cache.wasm -> builds/cache-v7.wasm` works);
//   - a file over limit bytes (at most limit+1 bytes are ever read).
//
// A missing file is a *DirFileError wrapping fs.ErrNotExist; every
// refusal is a *DirFileError (a size refusal also wraps a *LimitError)
// naming the file and the limit.
func ReadDirFile(dir, rel string, limit int64) ([]byte, error) {
	fail := func(problem string, err error) ([]byte, error) {
		return nil, &DirFileError{Path: filepath.ToSlash(rel), Problem: problem, Err: err}
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fail("the policy directory cannot be resolved", err)
	}
	if filepath.IsAbs(rel) {
		return fail("not a path inside the policy directory", nil)
	}
	if c := filepath.Clean(rel); c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return fail("leads out of the policy directory; refused", nil)
	}
	target, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return fail("does not exist", err)
	}
	if err != nil {
		return fail("cannot be resolved", err)
	}
	if in, err := filepath.Rel(root, target); err != nil || in == ".." || strings.HasPrefix(in, ".."+string(filepath.Separator)) {
		return fail("leads out of the policy directory (through a symlink); refused", nil)
	}
	fi, err := os.Lstat(target)
	if err != nil {
		return fail("cannot be read", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("is "+fileKind(fi.Mode())+", not a regular file; refused", nil)
	}
	f, err := os.OpenFile(target, os.O_RDONLY|openNoBlock, 0)
	if err != nil {
		return fail("cannot be opened", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return fail("cannot be read", err)
	}
	if !fi.Mode().IsRegular() { // replaced since the lstat
		return fail("is "+fileKind(fi.Mode())+", not a regular file; refused", nil)
	}
	over := func(n int64) ([]byte, error) {
		le := &LimitError{Field: filepath.ToSlash(rel), Limit: float64(limit), Unit: "bytes", Got: float64(n)}
		return nil, &DirFileError{Path: filepath.ToSlash(rel), Problem: fmt.Sprintf("over the limit of %d bytes (%d bytes or more); refused", limit, n), Err: le}
	}
	if fi.Size() > limit {
		return over(fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return fail("cannot be read", err)
	}
	if int64(len(b)) > limit {
		return over(int64(len(b)))
	}
	return b, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0, m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "not a regular file"
}
