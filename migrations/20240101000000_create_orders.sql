CREATE TABLE IF NOT EXISTS orders (
    id bigserial UNIQUE,
    order_uid text PRIMARY KEY,
    document json NOT NULL,
    track_number text,
    customer_id text,
    date_created timestamptz,
    stan_sequence bigint,
    ingested_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS rejected_messages (
    id bigserial PRIMARY KEY,
    channel text NOT NULL,
    stan_sequence bigint NOT NULL,
    payload bytea NOT NULL,
    payload_sha256 bytea NOT NULL,
    reason_class text NOT NULL,
    reasons jsonb NOT NULL,
    order_uid text,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, stan_sequence, payload_sha256)
);
