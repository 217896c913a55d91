-- Orders are static once written. Each is kept as its validated document, stored as `json` (the exact bytes we
-- serve: a restart serves byte for byte what was served before, with no re-serialization), plus the few key
-- columns someone would search by, indexed. Nothing is ever updated: a second version of an order_uid becomes a
-- dead letter (class "conflict").
CREATE TABLE orders (
    order_uid     text        PRIMARY KEY,
    document      json        NOT NULL,
    track_number  text        NOT NULL,
    customer_id   text        NOT NULL,
    date_created  timestamptz,                       -- NULL only if PostgreSQL cannot represent the instant
    stan_sequence bigint      NOT NULL,              -- sequence of the delivery that stored it
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    id            bigserial   NOT NULL UNIQUE        -- ingest order, for paging newest first
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_track_number_idx ON orders (track_number);

-- Everything that arrived and is not an order, raw bytes and all, with every reason. A redelivery of the same
-- message (same channel, sequence and bytes) does not add a row.
CREATE TABLE rejected_messages (
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
CREATE INDEX rejected_messages_order_uid_idx ON rejected_messages (order_uid);
