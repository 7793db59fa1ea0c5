-- Webhooks of projects, their deliveries and each delivery's attempts (docs/api.md, webhooks).
-- Secrets are stored sealed (project_svc/webhook_signing.py: AES-GCM under
-- WEBHOOK_ENCRYPTION_KEY), never in plaintext; during a rotation's overlap the previous one is
-- kept (sealed) until previous_secret_until.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    active boolean NOT NULL DEFAULT true,
    secret_sealed text NOT NULL,
    previous_secret_sealed text,
    previous_secret_until timestamptz,
    disabled_reason text,
    -- since when every attempt failed (null after any success): the automatic disabling
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_project_id ON webhooks (project_id);
CREATE INDEX webhooks_events ON webhooks USING gin (events) WHERE active;

CREATE TABLE webhook_deliveries (
    -- also the `webhook-id` header: stable across attempts, the receiver's idempotency key
    id text PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    event_type text NOT NULL,
    payload bytea NOT NULL,  -- the body exactly as signed and sent
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    duration_ms double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- one delivery per webhook and event, however often the event arrives
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number integer NOT NULL,
    at timestamptz NOT NULL,
    status_code integer,
    error text,
    duration_ms double precision NOT NULL,
    answer text NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, number)
);
