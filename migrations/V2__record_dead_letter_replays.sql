-- An operator may replay a dead letter through the pipeline after fixing its cause (POST /rejected/{id}/replay).
-- The dead letter stays, as the record of what arrived; these columns record the latest replay and what it gave.
-- A replay that is rejected again adds no row: it carries the dead letter's own channel, sequence and bytes, so
-- the unique key (channel, stan_sequence, payload_sha256) meets this row.
ALTER TABLE rejected_messages
    ADD COLUMN replay_count        integer     NOT NULL DEFAULT 0,
    ADD COLUMN replayed_at         timestamptz,
    ADD COLUMN replay_outcome      text CHECK (replay_outcome IN ('persisted', 'duplicate', 'rejected')),
    ADD COLUMN replay_reason_class text,     -- the class of the latest replay's rejection, if it was rejected
    ADD COLUMN replay_reasons      jsonb;    -- its reasons, if it was rejected
