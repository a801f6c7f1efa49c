package llm

import (
	"strings"
	"sync"

	"github.com/maypok86/otter/v2"
	"github.com/tiktoken-go/tokenizer"
)

var o200k = sync.OnceValue(func() tokenizer.Codec {
	c, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		panic("llm: o200k tokenizer: " + err.Error())
	}
	return c
})

// tokenCache remembers the counts of longer texts: a conversation resends
// its history with every turn (the OpenAI-compatible gateway is
// stateless), and BPE costs tens of microseconds per message. Bounded by
// the bytes of text it holds.
var tokenCache = otter.Must(&otter.Options[string, int32]{
	MaximumWeight: TokenCacheBytes,
	Weigher:       func(k string, _ int32) uint32 { return uint32(min(len(k), 1<<30)) + 32 },
})

// TokenCacheBytes bounds the text held by the token-count cache.
const TokenCacheBytes = 32 << 20

// minCachedLen: shorter texts are counted directly.
const minCachedLen = 64

// CountTokens returns the number of o200k tokens in s. It is the host's one
// measure of text size for budgets and estimates; billing uses the
// provider's reported usage instead. Safe for concurrent use.
func CountTokens(s string) int {
	if s == "" {
		return 0
	}
	if len(s) < minCachedLen {
		return count(s)
	}
	if n, ok := tokenCache.GetIfPresent(s); ok {
		return int(n)
	}
	n := count(s)
	// Clone: the caller's string may share memory with a larger buffer.
	tokenCache.Set(strings.Clone(s), int32(n))
	return n
}

func count(s string) int {
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
