// Package train learns the route policy's models from the evaluation data
// in ../shared/data (CLINC150 and RouteLLM) and measures them. The
// generator (plugins/route/internal/gen) and the evaluation test use it;
// the policy itself never does.
package train

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNoData is returned when the shared data directory is absent.
var ErrNoData = errors.New("train: shared data not found")

// DataDir returns the evaluation data directory: $WINGATE_DATA_DIR when
// set, else "data" in the shared folder beside the module root (found by
// walking up from the working directory), or ErrNoData.
func DataDir() (string, error) {
	if d := os.Getenv("WINGATE_DATA_DIR"); d != "" {
		if _, err := os.Stat(d); err != nil {
			return "", fmt.Errorf("%w at %s (WINGATE_DATA_DIR)", ErrNoData, d)
		}
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "data")
			if _, err := os.Stat(d); err != nil {
				return "", fmt.Errorf("%w at %s", ErrNoData, d)
			}
			return d, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no go.mod above the working directory", ErrNoData)
		}
		dir = parent
	}
}

// Utterance is one CLINC150 utterance.
type Utterance struct {
	Text   string
	Intent string
	Domain string // "" for out-of-scope
}

// Chat reports whether the utterance is in the small_talk or meta domain.
func (u Utterance) Chat() bool { return u.Domain == "small_talk" || u.Domain == "meta" }

// CLINC holds the CLINC150 splits by name (train, val, test, oos_train,
// oos_val, oos_test).
type CLINC map[string][]Utterance

// LoadCLINC reads clinc150/data_full.json and clinc150/domains.json.
func LoadCLINC(dataDir string) (CLINC, error) {
	var full map[string][][2]string
	var domains map[string][]string
	if err := readJSON(filepath.Join(dataDir, "clinc150", "data_full.json"), &full); err != nil {
		return nil, err
	}
	if err := readJSON(filepath.Join(dataDir, "clinc150", "domains.json"), &domains); err != nil {
		return nil, err
	}
	domainOf := map[string]string{}
	for d, intents := range domains {
		for _, in := range intents {
			domainOf[in] = d
		}
	}
	out := CLINC{}
	for split, rows := range full {
		us := make([]Utterance, len(rows))
		for i, r := range rows {
			us[i] = Utterance{Text: r[0], Intent: r[1], Domain: domainOf[r[1]]}
		}
		out[split] = us
	}
	if len(out["train"]) == 0 || len(out["test"]) == 0 {
		return nil, fmt.Errorf("train: clinc150: missing train or test split")
	}
	return out, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %w", ErrNoData, err)
		}
		return fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	return nil
}

// Prompt is one RouteLLM prompt with whether each model answered it
// correctly.
type Prompt struct {
	Text    string
	Subject string // "gsm8k" or the MMLU subject
	Weak    bool   // Mixtral-8x7B-Instruct correct
	Strong  bool   // GPT-4-1106-preview correct
}

// LoadRouteLLM reads routellm/gsm8k_responses.csv and every
// routellm/mmlu/mmlu_*.csv, in a fixed order.
func LoadRouteLLM(dataDir string) ([]Prompt, error) {
	dir := filepath.Join(dataDir, "routellm")
	files, err := filepath.Glob(filepath.Join(dir, "mmlu", "mmlu_*.csv"))
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	sort.Strings(files)
	files = append([]string{filepath.Join(dir, "gsm8k_responses.csv")}, files...)
	var out []Prompt
	for _, f := range files {
		subject := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "mmlu_"), ".csv")
		if subject == "gsm8k_responses" {
			subject = "gsm8k"
		}
		ps, err := readPrompts(f, subject)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func readPrompts(path, subject string) ([]Prompt, error) {
	fh, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNoData, err)
		}
		return nil, fmt.Errorf("train: %w", err)
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	weak, strong := -1, -1
	for i, h := range head {
		switch h {
		case "mistralai/Mixtral-8x7B-Instruct-v0.1":
			weak = i
		case "gpt-4-1106-preview":
			strong = i
		}
	}
	if weak < 0 || strong < 0 || head[0] != "prompt" {
		return nil, fmt.Errorf("train: %s: unexpected header %q", path, head)
	}
	var out []Prompt
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("train: %s: %w", path, err)
		}
		out = append(out, Prompt{Text: rec[0], Subject: subject, Weak: rec[weak] == "True", Strong: rec[strong] == "True"})
	}
	return out, nil
}
