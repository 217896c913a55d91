-- Orders are static once written: the validated document is kept as `json` (the exact bytes we serve, so a
-- restart serves byte-for-byte what was served before), with the few key columns someone would query indexed.
CREATE TABLE IF NOT EXISTS orders (
    id            bigserial   NOT NULL UNIQUE,          -- ingest order, for paging newest first
    order_uid     text        PRIMARY KEY,
    document      json        NOT NULL,
    track_number  text        NOT NULL,
    customer_id   text        NOT NULL,
    date_created  text        NOT NULL,
    stan_sequence bigint      NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);

-- Everything that arrived and is not an order, raw bytes and all, with every reason. A redelivery of the same
-- message (same channel, sequence and bytes) does not add a row.
CREATE TABLE IF NOT EXISTS rejected_messages (
    id             bigserial   PRIMARY KEY,
    channel        text        NOT NULL,
    stan_sequence  bigint      NOT NULL,
    payload        bytea       NOT NULL,
    payload_sha256 bytea       NOT NULL,
    reason_class   text        NOT NULL,
    reasons        jsonb       NOT NULL,
    order_uid      text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, stan_sequence, payload_sha256)
);
