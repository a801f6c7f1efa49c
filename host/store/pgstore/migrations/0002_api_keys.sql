-- Virtual keys of the AI gateway and their ledger. A key's secret is
-- never stored, only its SHA-256; after a rotation the previous hash
-- keeps opening until prev_valid_until.
CREATE TABLE api_keys (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    secret_hash      bytea NOT NULL UNIQUE,
    hint             text NOT NULL,
    prev_secret_hash bytea,
    prev_valid_until timestamptz,
    models           text[] NOT NULL DEFAULT '{}',
    rpm              integer NOT NULL DEFAULT 0 CHECK (rpm >= 0),
    tpm              integer NOT NULL DEFAULT 0 CHECK (tpm >= 0),
    budget_micros    bigint NOT NULL DEFAULT 0 CHECK (budget_micros >= 0),
    budget_period    text NOT NULL DEFAULT 'month' CHECK (budget_period IN ('day', 'month', 'total')),
    expires_at       timestamptz,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    rotated_at       timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX api_keys_prev_secret ON api_keys (prev_secret_hash) WHERE prev_secret_hash IS NOT NULL;

-- One row per settled gateway call on a key (request_id makes a retried
-- write idempotent); money in micro-dollars so
-- that sums are exact.
CREATE TABLE api_key_usage (
    id            bigserial PRIMARY KEY,
    key_id        text NOT NULL REFERENCES api_keys (id),
    at            timestamptz NOT NULL,
    request_id    text NOT NULL UNIQUE,
    endpoint      text NOT NULL,
    model         text NOT NULL,
    tier          text NOT NULL,
    input_tokens  integer NOT NULL,
    output_tokens integer NOT NULL,
    cost_micros   bigint NOT NULL,
    partial       boolean NOT NULL DEFAULT false
);
CREATE INDEX api_key_usage_key_at ON api_key_usage (key_id, at);
