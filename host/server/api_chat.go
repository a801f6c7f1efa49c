package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/store"
)

// chatTimeout bounds one chat turn, streaming included, once the handler
// has handed it to its own goroutine.
const chatTimeout = 3 * time.Minute

func (s *Server) chatRoutes() {
	s.registerAPI(fiber.MethodPost, routeChatSessions, s.createChatSession)
	s.registerAPI(fiber.MethodGet, routeChatSessions, s.listChatSessions)
	s.registerAPI(fiber.MethodGet, routeChatMessages, s.listChatMessages)
	s.registerAPI(fiber.MethodPost, routeChatMessages, s.sendChatMessage)
	s.registerAPI(fiber.MethodGet, routeChatCost, s.chatCost)
	s.app.Post("/v1/chat/completions", s.openAIAuth, s.chatCompletions)
	s.app.Post(routeMessages, s.anthropicAuth, s.messages)
	s.app.Get("/v1/models", s.modelsAuth, s.listModels)
	s.app.Get("/v1/models/:model", s.modelsAuth, s.getModel)
}

// chatError answers a chat error from the table, logging a failure of
// the models or the store with its text.
func (s *Server) chatError(err error) error {
	ae, internal := apiError(err)
	if ae.Status >= 500 && !internal {
		s.log.Warn("chat failed", "status", ae.Status, "err", err)
	}
	if internal {
		return err // the error handler logs it and answers 500
	}
	return ae
}

type createSessionBody struct {
	Title string `json:"title"`
}

func (s *Server) createChatSession(c *fiber.Ctx) error {
	uid, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	var body createSessionBody
	if len(c.Body()) > 0 {
		if err := json.Unmarshal(c.Body(), &body); err != nil {
			return badRequest("invalid_body", "body: must be a JSON object like {\"title\": \"...\"}")
		}
	}
	sess, err := s.deps.Chat.CreateSession(c.UserContext(), uid, body.Title)
	if err != nil {
		return s.chatError(err)
	}
	return c.Status(fiber.StatusCreated).JSON(sess)
}

// listChatSessions answers the caller's own sessions, newest first:
// {"items": [...]}; limit 1 to 100, default 20.
func (s *Server) listChatSessions(c *fiber.Ctx) error {
	uid, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	limit, err := queryInt(c, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	sessions, err := s.deps.Chat.Sessions(c.UserContext(), uid, int(limit))
	if err != nil {
		return s.chatError(err)
	}
	if sessions == nil {
		sessions = []store.ChatSession{}
	}
	return c.JSON(fiber.Map{"items": sessions})
}

func (s *Server) listChatMessages(c *fiber.Ctx) error {
	uid, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	after, err := queryInt(c, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	msgs, err := s.deps.Chat.Messages(c.UserContext(), uid, sessionParam(c), int64(after), int(limit))
	if err != nil {
		return s.chatError(err)
	}
	next := int64(0)
	if len(msgs) == int(limit) {
		next = msgs[len(msgs)-1].ID
	}
	return c.JSON(fiber.Map{"messages": msgs, "next_after": next})
}

func queryInt(c *fiber.Ctx, name string, def, lo, hi int64) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("invalid_"+name, name+": must be an integer from "+strconv.FormatInt(lo, 10)+" to "+strconv.FormatInt(hi, 10))
	}
	return n, nil
}

func (s *Server) chatCost(c *fiber.Ctx) error {
	uid, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	rep, err := s.deps.Chat.Cost(c.UserContext(), uid, sessionParam(c))
	if err != nil {
		return s.chatError(err)
	}
	return c.JSON(rep)
}

type sendBody struct {
	Text    *string `json:"text"`
	Purpose string  `json:"purpose"`
}

// parseSendBody reads {"text": "...", "purpose": "chat"|"assessment"}; the
// text's content and the purpose are validated by the chat service.
func parseSendBody(b []byte) (chat.Input, error) {
	var body sendBody
	if err := json.Unmarshal(b, &body); err != nil {
		return chat.Input{}, badRequest("invalid_body", "body: must be a JSON object like {\"text\": \"...\"}")
	}
	if body.Text == nil {
		return chat.Input{}, badRequest("invalid_text", "text: is required")
	}
	return chat.Input{Text: *body.Text, Purpose: body.Purpose}, nil
}

func wantsSSE(c *fiber.Ctx) bool {
	return strings.Contains(c.Get(fiber.HeaderAccept), "text/event-stream")
}

// sendChatMessage answers one user message: JSON by default, or an SSE
// stream ("delta" events with text, then "done" with the same object the
// JSON answer holds, or "error") when the client accepts
// text/event-stream. Errors before the first text still get a plain JSON
// answer with the right status.
func (s *Server) sendChatMessage(c *fiber.Ctx) error {
	uid, ok := userID(c)
	if !ok {
		return unauthorized("missing bearer token")
	}
	in, err := parseSendBody(c.Body())
	if err != nil {
		return err
	}
	sid := sessionParam(c)
	if !wantsSSE(c) {
		reply, err := s.deps.Chat.Send(c.UserContext(), uid, sid, in, nil)
		if err != nil {
			return s.chatError(err)
		}
		return c.JSON(reply)
	}
	st := startStream(func(ctx context.Context, onDelta llm.DeltaFunc, _ *string) (any, error) {
		return s.deps.Chat.Send(ctx, uid, sid, in, onDelta)
	})
	first := st.first()
	if first.err != nil {
		st.drain()
		return s.chatError(first.err)
	}
	setSSEHeaders(c)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		write := func(ev streamEvent) bool {
			switch {
			case ev.final && ev.err != nil:
				ae, _ := apiError(ev.err)
				s.log.Warn("chat stream failed", "err", ev.err)
				writeSSE(w, "error", ae.JSONBody())
			case ev.final:
				writeSSE(w, "done", ev.result)
			default:
				writeSSE(w, "delta", fiber.Map{"text": ev.delta})
			}
			return w.Flush() == nil
		}
		st.pump(first, true, write)
	})
	return nil
}

func setSSEHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderConnection, "keep-alive")
	c.Set("X-Accel-Buffering", "no")
}

func writeSSE(w *bufio.Writer, event string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	if event != "" {
		w.WriteString("event: ")
		w.WriteString(event)
		w.WriteByte('\n')
	}
	w.WriteString("data: ")
	w.Write(b)
	w.WriteString("\n\n")
}

// streamEvent is one step of a streamed turn: a piece of text, or the
// final result or error.
type streamEvent struct {
	delta  string
	model  string // model answering, for gateway chunks
	final  bool
	result any
	err    error
}

// turnStream runs a turn in its own goroutine so that the handler can
// wait for the first text (or an early error, answered with a proper
// status) before committing to a streamed 200.
type turnStream struct {
	events chan streamEvent
	cancel context.CancelFunc
}

func startStream(run func(ctx context.Context, onDelta llm.DeltaFunc, model *string) (any, error)) *turnStream {
	ctx, cancel := context.WithTimeout(context.Background(), chatTimeout)
	st := &turnStream{events: make(chan streamEvent, 64), cancel: cancel}
	go func() {
		defer close(st.events)
		var model string // set by run's goroutine, read here: same goroutine
		res, err := run(ctx, func(d string) error {
			select {
			case st.events <- streamEvent{delta: d, model: model}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, &model)
		st.events <- streamEvent{final: true, result: res, err: err}
	}()
	return st
}

// first waits for the first event.
func (st *turnStream) first() streamEvent {
	ev, ok := <-st.events
	if !ok {
		return streamEvent{final: true, err: errors.New("server: stream ended without a result")}
	}
	return ev
}

// drain cancels the turn and consumes what is left.
func (st *turnStream) drain() {
	st.cancel()
	for range st.events {
	}
}

// pump writes first and every following event. After a write fails (the
// client left) it stops writing; with finish the turn still runs to its
// end (a chat answer is stored for the client to read later), otherwise
// it is canceled.
func (st *turnStream) pump(first streamEvent, finish bool, write func(streamEvent) bool) {
	defer st.drain()
	ok := write(first)
	for ev := range st.events {
		if !ok {
			if !finish {
				return
			}
			continue
		}
		ok = write(ev)
	}
}

// sessionParam returns the :id path parameter as a string of its own:
// Fiber's values point into a buffer reused after the handler returns,
// and the id outlives it (stored messages, streamed turns).
func sessionParam(c *fiber.Ctx) string { return strings.Clone(c.Params("id")) }
