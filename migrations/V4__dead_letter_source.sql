-- Dead letters record which broker they came from: `stan` (a NATS Streaming channel) or `jetstream` (a JetStream
-- stream). `channel` holds the channel or the stream, `stan_sequence` the sequence in it (the stream sequence for
-- JetStream). Rows from before keep theirs and are `stan`. A redelivery of the same message (same source, channel,
-- sequence and bytes) still adds no row; the same sequence in the other source is another message.
ALTER TABLE rejected_messages
    ADD COLUMN source text NOT NULL DEFAULT 'stan' CHECK (source IN ('stan', 'jetstream'));
ALTER TABLE rejected_messages
    DROP CONSTRAINT rejected_messages_channel_stan_sequence_payload_sha256_key;
ALTER TABLE rejected_messages
    ADD CONSTRAINT rejected_messages_source_channel_sequence_payload_key
        UNIQUE (source, channel, stan_sequence, payload_sha256);
COMMENT ON COLUMN rejected_messages.stan_sequence IS
    'The sequence of the message in its channel (STAN) or stream (JetStream).';
