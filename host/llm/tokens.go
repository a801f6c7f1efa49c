package llm

import (
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

var o200k = sync.OnceValue(func() tokenizer.Codec {
	c, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		panic("llm: o200k tokenizer: " + err.Error())
	}
	return c
})

// CountTokens returns the number of o200k tokens in s. It is the host's one
// measure of text size for budgets and estimates; billing uses the
// provider's reported usage instead.
func CountTokens(s string) int {
	if s == "" {
		return 0
	}
	n, err := o200k().Count(s)
	if err != nil {
		// Only strict mode fails; fall back to a byte estimate.
		return (len(s) + 3) / 4
	}
	return n
}

// MessageOverheadTokens is the per-message framing (role, separators) that
// chat formats add to the text's own tokens.
const MessageOverheadTokens = 4

// CountMessages returns the tokens of a system prompt and messages as a
// model would see them, framing included.
func CountMessages(system string, msgs []Message) int {
	n := 0
	if system != "" {
		n += CountTokens(system) + MessageOverheadTokens
	}
	for _, m := range msgs {
		n += CountTokens(m.Content) + MessageOverheadTokens
	}
	return n
}
