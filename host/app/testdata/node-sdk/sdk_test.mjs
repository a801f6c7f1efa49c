// OpenAI's Node SDK against Wingate's OpenAI-compatible surface: the same
// cases TestOpenAISDKAgainstServe runs with the Go SDK (the models list,
// plain and streamed chat, a tool round trip, an unknown model, an
// unsupported parameter, max_tokens truncation, an unknown path), so that
// what the Node SDK reads and throws is checked too.
//
//   WINGATE_BASE_URL       the SDK's base URL: the server's /v1
//   WINGATE_API_KEY        a Wingate bearer token, as the API key
//   WINGATE_REVOKED_KEY    optional: a key the server must refuse (401 invalid_api_key)
//   WINGATE_EXHAUSTED_KEY  optional: a key out of quota (429 insufficient_quota)
//
// One JSON line per case on stdout, {"case", "ok", "detail"}; the exit
// status is 1 when a case failed, 2 when the environment is incomplete.
// TestOpenAINodeSDKAgainstServe installs the SDK (npm ci) and runs this.

import OpenAI from 'openai';

const baseURL = process.env.WINGATE_BASE_URL;
const apiKey = process.env.WINGATE_API_KEY;
if (!baseURL || !apiKey) {
  console.error('set WINGATE_BASE_URL (the server\'s /v1) and WINGATE_API_KEY (a bearer token)');
  process.exit(2);
}

// No retries: a refusal must reach the case as the SDK first sees it.
const clientFor = (key) => new OpenAI({ baseURL, apiKey: key, maxRetries: 0, timeout: 30_000 });
const client = clientFor(apiKey);

const ask = [{ role: 'user', content: 'What is the weather in Oslo right now?' }];
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'current weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

// A case returns a short account of what it saw. check records a problem
// and goes on, as t.Errorf does; fatal records one and ends the case, as
// t.Fatal does; anything the case throws is a problem too.
const ended = Symbol('ended');
class Problems {
  list = [];
  check(ok, what) {
    if (!ok) this.list.push(what);
    return ok;
  }
  fatal(ok, what) {
    if (!ok) {
      this.list.push(what);
      throw ended;
    }
  }
}

const show = (v) => JSON.stringify(v);

// refusal checks that err is the SDK's error class want with the status,
// code and param given (param null: none), a message, and type when one
// is given.
function refusal(err, want, status, code, param, type) {
  if (!(err instanceof want)) {
    return `${err?.constructor?.name ?? typeof err}: ${err?.message ?? err}, want ${want.name}`;
  }
  const bad = [];
  if (err.status !== status) bad.push(`status ${err.status}, want ${status}`);
  if (err.code !== code) bad.push(`code ${show(err.code)}, want ${show(code)}`);
  if ((err.param ?? null) !== param) bad.push(`param ${show(err.param)}, want ${show(param)}`);
  if (type && err.type !== type) bad.push(`type ${show(err.type)}, want ${show(type)}`);
  if (typeof err.error?.message !== 'string' || err.error.message === '') bad.push('no message');
  return bad.length ? `${want.name}: ${bad.join(', ')}` : null;
}

// refuses awaits call, which must throw as refusal describes; it returns
// the problem, or null.
async function refuses(call, want, status, code, param, type = 'invalid_request_error') {
  try {
    const got = await call();
    return `no error (got ${show(got).slice(0, 200)}), want ${want.name} ${status} ${code}`;
  } catch (err) {
    return refusal(err, want, status, code, param, type);
  }
}

// streamed runs params through the SDK's stream helper, which builds the
// whole completion from the chunks as a Node caller would (and throws on
// a chunk or a finish it cannot read).
async function streamed(params) {
  const stream = client.chat.completions.stream(params);
  return stream.finalChatCompletion();
}

const cases = [];
const test = (name, fn) => cases.push({ name, fn });

test('models', async (p) => {
  const ids = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    p.check(m.object === 'model' && typeof m.owned_by === 'string' && m.owned_by !== '', `model ${show(m)}`);
  }
  const want = ['auto', 'economy', 'standard', 'premium', 'claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-opus-4-5'];
  p.check(show(ids) === show(want), `models ${show(ids)}, want ${show(want)}`);
  const m = await client.models.retrieve('claude-opus-4-5');
  p.check(m.id === 'claude-opus-4-5' && m.owned_by === 'simulated', `retrieve: ${show(m)}`);
  const problem = await refuses(() => client.models.retrieve('gpt-nothing'), OpenAI.NotFoundError, 404, 'model_not_found', 'model');
  p.check(!problem, `retrieve gpt-nothing: ${problem}`);
  return `${ids.length} models: ${ids.join(', ')}`;
});

test('chat', async (p) => {
  const resp = await client.chat.completions.create({ model: 'auto', messages: ask, temperature: 0.2, seed: 7, top_p: 0.9 });
  const ch = resp.choices?.[0];
  p.fatal(resp.choices?.length === 1, `choices ${show(resp.choices)}`);
  p.check(typeof ch.message.content === 'string' && ch.message.content.startsWith('[simulated claude-'), `content ${show(ch.message.content)}`);
  p.check(ch.finish_reason === 'stop', `finish_reason ${show(ch.finish_reason)}`);
  p.check(resp.object === 'chat.completion' && resp.id && resp.model, `completion ${show({ ...resp, choices: undefined })}`);
  return `${resp.model}, ${resp.usage?.completion_tokens} tokens`;
});

test('streaming', async (p) => {
  const params = { model: 'standard', messages: ask, stream_options: { include_usage: true } };
  // The chunks as they arrive: text deltas, the finish, then the usage
  // alone (no choices) because include_usage asked for it.
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const text = chunks.flatMap((c) => c.choices ?? []).map((c) => c.delta?.content ?? '').join('');
  const finishes = chunks.flatMap((c) => c.choices ?? []).map((c) => c.finish_reason).filter(Boolean);
  const last = chunks.at(-1);
  p.fatal(chunks.length >= 3, `${chunks.length} chunks`);
  p.check(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id), 'chunks of another kind or id');
  p.check(text !== '', 'no text in the chunks');
  p.check(show(finishes) === '["stop"]', `finish reasons ${show(finishes)}`);
  p.check(last.choices?.length === 0 && last.usage?.completion_tokens > 0 && last.usage.total_tokens > 0,
    `last chunk ${show(last)}, want the usage alone`);
  p.check(chunks.slice(0, -1).every((c) => c.usage == null), 'usage before the last chunk');
  // The SDK's own accumulation of the same stream.
  const acc = await streamed(params);
  p.fatal(acc.choices.length === 1, `accumulated choices ${show(acc.choices)}`);
  p.check(acc.choices[0].message.content === text && acc.choices[0].finish_reason === 'stop' && acc.usage?.completion_tokens > 0,
    `accumulated ${show(acc.choices)} usage ${show(acc.usage)}`);
  return `${chunks.length} chunks, ${text.length} characters, ${last.usage?.completion_tokens} completion tokens`;
});

test('tools round trip', async (p) => {
  const params = { model: 'auto', messages: ask, tools: [weatherTool] };
  const resp = await client.chat.completions.create(params);
  const ch = resp.choices?.[0];
  p.fatal(ch?.finish_reason === 'tool_calls' && ch.message.tool_calls?.length === 1 && ch.message.tool_calls[0].function?.name === 'get_weather',
    `choice ${show(ch)}`);
  const call = ch.message.tool_calls[0];
  let args;
  try {
    args = JSON.parse(call.function.arguments);
  } catch (err) {
    p.check(false, `arguments ${show(call.function.arguments)}: ${err.message}`);
  }
  p.check(!args || (typeof args.city === 'string' && args.city !== ''), `arguments ${show(call.function.arguments)}`);
  p.check(call.type === 'function' && typeof call.id === 'string' && call.id !== '', `call ${show(call)}`);
  // Streamed, the same call arrives through the SDK's accumulation.
  const acc = await streamed(params);
  const sc = acc.choices[0];
  p.check(acc.choices.length === 1 && sc.finish_reason === 'tool_calls' && sc.message.tool_calls?.length === 1 &&
    sc.message.tool_calls[0].function.arguments === call.function.arguments && sc.message.tool_calls[0].id === call.id,
    `streamed tool call ${show(acc.choices)}`);
  // The result goes back (the assistant message as the SDK returned it);
  // the model answers in text.
  const after = await client.chat.completions.create({
    ...params,
    messages: [...ask, ch.message, { role: 'tool', tool_call_id: call.id, content: '4 degrees and rain' }],
  });
  const ac = after.choices?.[0];
  p.check(ac?.finish_reason === 'stop' && typeof ac.message.content === 'string' && ac.message.content !== '' && !ac.message.tool_calls?.length,
    `answer after the tool result: ${show(ac)}`);
  return `${call.function.name}(${call.function.arguments}) as ${call.id}, then ${show(ac?.message?.content?.slice(0, 60))}`;
});

test('unknown model', async (p) => {
  const req = { model: 'gpt-nothing', messages: ask };
  let problem = await refuses(() => client.chat.completions.create(req), OpenAI.NotFoundError, 404, 'model_not_found', 'model');
  p.check(!problem, `plain: ${problem}`);
  problem = await refuses(async () => {
    const stream = await client.chat.completions.create({ ...req, stream: true });
    for await (const chunk of stream) return chunk;
  }, OpenAI.NotFoundError, 404, 'model_not_found', 'model');
  p.check(!problem, `streamed: ${problem}`);
  return 'NotFoundError 404 model_not_found, plain and streamed';
});

test('unsupported parameter', async (p) => {
  for (const [param, req] of [
    ['logprobs', { model: 'auto', messages: ask, logprobs: true }],
    // The simulated provider has no JSON mode: refused, not ignored.
    ['response_format', { model: 'economy', messages: ask, response_format: { type: 'json_object' } }],
    // A parameter the SDK does not know goes out as given.
    ['frobnicate', { model: 'auto', messages: ask, frobnicate: true }],
  ]) {
    const problem = await refuses(() => client.chat.completions.create(req), OpenAI.BadRequestError, 400, 'unsupported_parameter', param);
    p.check(!problem, `${param}: ${problem}`);
  }
  return 'BadRequestError 400 unsupported_parameter for logprobs, response_format, frobnicate';
});

test('max_tokens truncation', async (p) => {
  const seen = [];
  for (const [name, req] of [
    ['max_tokens', { model: 'auto', messages: ask, max_tokens: 6 }],
    ['max_completion_tokens', { model: 'premium', messages: ask, max_completion_tokens: 6 }],
  ]) {
    const resp = await client.chat.completions.create(req);
    const ch = resp.choices?.[0];
    p.fatal(ch, `${name}: no choice`);
    p.check(ch.finish_reason === 'length' && resp.usage?.completion_tokens <= 6,
      `${name}: finish ${show(ch.finish_reason)}, ${resp.usage?.completion_tokens} tokens`);
    const acc = await streamed(req);
    const sc = acc.choices[0];
    p.check(sc?.finish_reason === 'length' && sc.message.content === ch.message.content,
      `${name} streamed: finish ${show(sc?.finish_reason)}, ${show(sc?.message?.content)} (plain ${show(ch.message.content)})`);
    seen.push(`${name}: ${resp.usage?.completion_tokens} tokens, ${ch.finish_reason}`);
  }
  return seen.join('; ');
});

test('unknown path', async (p) => {
  const problem = await refuses(() => client.get('/embeddingz'), OpenAI.NotFoundError, 404, 'not_found', null);
  p.check(!problem, problem);
  return 'NotFoundError 404 not_found';
});

// Keys the server must refuse, run when given: a revoked key is not a
// credential any more; an exhausted one is out of quota.
if (process.env.WINGATE_REVOKED_KEY) {
  test('revoked key', async (p) => {
    const problem = await refuses(() => clientFor(process.env.WINGATE_REVOKED_KEY).chat.completions.create({ model: 'auto', messages: ask }),
      OpenAI.AuthenticationError, 401, 'invalid_api_key', null, null);
    p.check(!problem, problem);
    return 'AuthenticationError 401 invalid_api_key';
  });
}
if (process.env.WINGATE_EXHAUSTED_KEY) {
  test('exhausted key', async (p) => {
    const problem = await refuses(() => clientFor(process.env.WINGATE_EXHAUSTED_KEY).chat.completions.create({ model: 'auto', messages: ask }),
      OpenAI.RateLimitError, 429, 'insufficient_quota', null, null);
    p.check(!problem, problem);
    return 'RateLimitError 429 insufficient_quota';
  });
}

let failed = 0;
for (const { name, fn } of cases) {
  const p = new Problems();
  let detail;
  try {
    detail = await fn(p);
  } catch (err) {
    if (err !== ended) {
      p.list.push(err instanceof OpenAI.APIError ? `${err.constructor.name}: ${err.message}` : err?.stack ?? String(err));
    }
  }
  const ok = p.list.length === 0;
  if (!ok) failed++;
  console.log(JSON.stringify({ case: name, ok, detail: ok ? detail : p.list.join('; ') }));
}
process.exitCode = failed ? 1 : 0;
