package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// maxResponseBody bounds a non-streamed provider response.
const maxResponseBody = 32 << 20

// PostJSON sends payload as a JSON POST to url for a provider client: the
// header function adds the provider's own headers (authentication,
// version), and Accept asks for an SSE stream when stream is set. A
// transport failure is returned as an *Error of the provider; any HTTP
// answer, successful or not, is returned for the client to read or map,
// and the caller closes its body.
func PostJSON(ctx context.Context, hc *http.Client, provider, url string, payload any, stream bool, header func(http.Header)) (*http.Response, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, &Error{Provider: provider, Kind: KindBadRequest, Err: err}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Provider: provider, Kind: KindBadRequest, Err: err}
	}
	hr.Header.Set("Content-Type", "application/json")
	if stream {
		hr.Header.Set("Accept", "text/event-stream")
	} else {
		hr.Header.Set("Accept", "application/json")
	}
	if header != nil {
		header(hr.Header)
	}
	res, err := hc.Do(hr)
	if err != nil {
		return nil, AsError(provider, err)
	}
	return res, nil
}

// DecodeResponse decodes a successful non-streamed response body into v;
// a body that is not the expected JSON is the provider being unavailable.
func DecodeResponse(provider string, res *http.Response, v any) error {
	if err := json.NewDecoder(io.LimitReader(res.Body, maxResponseBody)).Decode(v); err != nil {
		return &Error{Provider: provider, Kind: KindUnavailable, Status: res.StatusCode, Message: "malformed response", Err: err}
	}
	return nil
}
