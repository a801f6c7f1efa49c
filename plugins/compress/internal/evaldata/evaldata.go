// Package evaldata loads what the compress policy is evaluated and
// benchmarked on: the LoCoMo conversations of ../shared/data (each turn
// rendered "Speaker: text" and counted with the o200k tokenizer) and a
// deterministic synthetic history. It is for tests and benchmarks only.
package evaldata

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Conv is one conversation ready for compress requests.
type Conv struct {
	ID        string
	Msgs      []abi.Message
	Total     int64 // tokens of the whole history
	Questions []Question
}

// Question is one non-adversarial question of a conversation.
type Question struct {
	Text     string
	Category int
	// Evidence holds message indexes; -1 for an id that names no turn.
	Evidence []int
}

// ErrAbsent is returned when the data set is not next to the repository.
var ErrAbsent = errors.New("evaldata: LoCoMo data absent")

var (
	once   sync.Once
	convs  []*Conv
	err    error
	codec  tokenizer.Codec
	codecE error
	cOnce  sync.Once
)

// Codec returns the o200k tokenizer.
func Codec() (tokenizer.Codec, error) {
	cOnce.Do(func() { codec, codecE = tokenizer.Get(tokenizer.O200kBase) })
	return codec, codecE
}

// RepoRoot walks up from the working directory to the go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("evaldata: go.mod not found")
		}
		dir = parent
	}
}

// LoCoMo reads and tokenises ../shared/data/locomo/locomo-dev.json once per
// process; it wraps ErrAbsent when the file is not there.
func LoCoMo() ([]*Conv, error) {
	once.Do(func() { convs, err = read() })
	return convs, err
}

func read() ([]*Conv, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "..", "shared", "data")
	if d := os.Getenv("WINGATE_DATA_DIR"); d != "" {
		dir = d
	}
	path := filepath.Join(dir, "locomo", "locomo-dev.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrAbsent, path)
	}
	if err != nil {
		return nil, err
	}
	var samples []struct {
		SampleID     string                     `json:"sample_id"`
		Conversation map[string]json.RawMessage `json:"conversation"`
		QA           []struct {
			Question string   `json:"question"`
			Category int      `json:"category"`
			Evidence []string `json:"evidence"`
		} `json:"qa"`
	}
	if err := json.Unmarshal(raw, &samples); err != nil {
		return nil, fmt.Errorf("evaldata: decode %s: %w", path, err)
	}
	codec, err := Codec()
	if err != nil {
		return nil, err
	}
	var out []*Conv
	for _, s := range samples {
		c := &Conv{ID: s.SampleID}
		index := map[string]int{}
		for n := 1; ; n++ {
			rawSession, ok := s.Conversation["session_"+strconv.Itoa(n)]
			if !ok {
				break
			}
			var turns []struct {
				Speaker string `json:"speaker"`
				DiaID   string `json:"dia_id"`
				Text    string `json:"text"`
			}
			if err := json.Unmarshal(rawSession, &turns); err != nil {
				return nil, fmt.Errorf("evaldata: decode %s session %d: %w", s.SampleID, n, err)
			}
			for _, tr := range turns {
				text := tr.Speaker + ": " + tr.Text
				tokens, err := codec.Count(text)
				if err != nil {
					return nil, err
				}
				role := abi.RoleUser
				if len(c.Msgs)%2 == 1 {
					role = abi.RoleAssistant
				}
				index[tr.DiaID] = len(c.Msgs)
				c.Msgs = append(c.Msgs, abi.Message{ID: tr.DiaID, Role: role, Text: text, Tokens: uint32(tokens)})
				c.Total += int64(tokens)
			}
		}
		for _, q := range s.QA {
			if q.Category == 5 {
				continue // adversarial: no evidence to recall
			}
			lq := Question{Text: q.Question, Category: q.Category}
			for _, e := range normaliseEvidence(q.Evidence) {
				i, ok := index[e]
				if !ok {
					i = -1
				}
				lq.Evidence = append(lq.Evidence, i)
			}
			c.Questions = append(c.Questions, lq)
		}
		out = append(out, c)
	}
	return out, nil
}

// normaliseEvidence repairs the data set's few malformed ids: "D8:6; D9:17"
// (two ids in one) and "D:11:26" (a stray colon). Ids that still name no
// turn stay and count as not recalled.
func normaliseEvidence(ids []string) []string {
	var out []string
	for _, id := range ids {
		for _, part := range strings.Split(id, ";") {
			part = strings.TrimSpace(part)
			part = strings.Replace(part, "D:", "D", 1)
			if part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// Synthetic returns a deterministic two-person chat of n turns of 8 to 40
// words each, with names, numbers and dates sprinkled in, and questions
// about it.
func Synthetic(n int) (msgs []abi.Message, queries []string) {
	words := strings.Fields(`we went to the park with kids yesterday and it was great I started a new job
		at the bakery last week my sister Anna visited from Chicago on 12 March we painted the fence
		the dog ran after a ball my friend Tom plays guitar in a band concert tickets cost 40 dollars
		I feel tired but happy work has been busy the garden needs water school starts in September
		our trip to Spain was amazing the food was delicious I read two books this month yoga helps
		me relax the car broke down again we adopted a cat named Luna the weather is cold today`)
	r := rand.New(rand.NewPCG(1, 2))
	msgs = make([]abi.Message, n)
	for i := range msgs {
		var sb strings.Builder
		if i%2 == 0 {
			sb.WriteString("Alex: ")
		} else {
			sb.WriteString("Sam: ")
		}
		k := 8 + r.IntN(33)
		for j := 0; j < k; j++ {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[r.IntN(len(words))])
		}
		sb.WriteByte('.')
		msgs[i] = abi.Message{ID: "m" + strconv.Itoa(i), Role: abi.Role(i % 2), Text: sb.String(), Tokens: uint32(k*13/10 + 3)}
	}
	queries = []string{
		"When did Anna visit from Chicago?", "What is the cat called?",
		"How much did the concert tickets cost?", "What does Tom play?",
	}
	return msgs, queries
}
