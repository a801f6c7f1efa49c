package chat

import (
	"context"
	"fmt"
	"testing"

	"github.com/wingman-app/wingate/host/llm"
)

// BenchmarkSend measures the pipeline's own cost per message (history
// load, token counting, decisions, storing, pricing) with an instant
// simulated provider and the in-memory store, for a session that grows
// from a 40-message history.
func BenchmarkSend(b *testing.B) {
	e := newEnv(b, newMemStore(b), nil)
	sid := e.session(b, 1)
	e.seed(b, sid, 40)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.svc.Send(ctx, 1, sid, Input{Text: fmt.Sprintf("What should I try at the party on Saturday, attempt %d?", i%50)}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompleteAuto measures a routed, compressed gateway call with a
// 100-message conversation.
func BenchmarkCompleteAuto(b *testing.B) {
	e := newEnv(b, newMemStore(b), nil)
	msgs := make([]llm.Message, 0, 101)
	for i := 0; i < 100; i++ {
		role := llm.RoleUser
		if i%2 == 1 {
			role = llm.RoleAssistant
		}
		msgs = append(msgs, llm.Message{Role: role, Content: fmt.Sprintf("Turn %d: we planned the hike to the lake with Priya on June %d and a budget of %d dollars.", i, i%28+1, 100+i)})
	}
	msgs = append(msgs, llm.Message{Role: llm.RoleUser, Content: "What was the budget again?"})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.svc.Complete(ctx, CompletionRequest{Model: ModelAuto, Messages: msgs}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
