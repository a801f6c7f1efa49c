package server

import (
	"context"
	"errors"
	"testing"

	openaisdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestOfficialOpenAIGoSDK drives /v1/chat/completions with OpenAI's own Go
// SDK, plain and streamed, so the requests are exactly what the SDK sends
// and the answers are read exactly as the SDK reads them.
func TestOfficialOpenAIGoSDK(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 1)
	ctx := context.Background()
	client := openaisdk.NewClient(option.WithBaseURL(f.url+"/v1/"), option.WithAPIKey(f.tokens[1]), option.WithMaxRetries(0))

	t.Run("plain", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{
			Model: "auto",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{
				openaisdk.SystemMessage("Be brief."),
				openaisdk.UserMessage("hi there"),
			},
			MaxCompletionTokens: openaisdk.Int(200),
			Temperature:         openaisdk.Float(0.3),
			N:                   openaisdk.Int(1),
			User:                openaisdk.String("sdk-user"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("choices = %+v", resp.Choices)
		}
		if resp.Model != "claude-haiku-4-5" || resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 ||
			resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Errorf("model %q usage %+v", resp.Model, resp.Usage)
		}
	})

	t.Run("content parts, named tier", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{
			Model: "premium",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{
				openaisdk.UserMessage([]openaisdk.ChatCompletionContentPartUnionParam{
					openaisdk.TextContentPart("Assess how I handled"),
					openaisdk.TextContentPart("my first networking event."),
				}),
			},
			MaxTokens: openaisdk.Int(300),
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Model != "claude-opus-4-5" || resp.Choices[0].Message.Content == "" {
			t.Errorf("model %q content %q", resp.Model, resp.Choices[0].Message.Content)
		}
	})

	t.Run("streaming with usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openaisdk.ChatCompletionNewParams{
			Model: "auto",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{
				openaisdk.UserMessage("How do I keep a conversation going when I run out of things to say?"),
			},
			StreamOptions: openaisdk.ChatCompletionStreamOptionsParam{IncludeUsage: openaisdk.Bool(true)},
		})
		var acc openaisdk.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 3 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason != "stop" {
			t.Errorf("%d chunks, accumulated %+v", chunks, acc.Choices)
		}
		if acc.Usage.PromptTokens == 0 || acc.Usage.CompletionTokens == 0 || acc.Model != "claude-sonnet-4-5" {
			t.Errorf("model %q usage %+v", acc.Model, acc.Usage)
		}
	})

	t.Run("errors", func(t *testing.T) {
		bad := openaisdk.NewClient(option.WithBaseURL(f.url+"/v1/"), option.WithAPIKey("not-a-token"), option.WithMaxRetries(0))
		_, err := bad.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hi")}})
		var apiErr *openaisdk.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type != "authentication_error" {
			t.Errorf("bad key: %v", err)
		}
		_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", N: openaisdk.Int(2),
			Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hi")}})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "n" {
			t.Errorf("n=2: %v", err)
		}
		f.sim.SetDown("*", true)
		defer f.sim.SetDown("*", false)
		_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hi")}})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Type != "server_error" {
			t.Errorf("every tier down: %v", err)
		}
	})
}
