-- The change feed (src/feed.rs): every instance learns every committed order, whoever committed it.
--
-- A cursor over `id` alone is not safe: ids are taken at insert, transactions commit in another order, so a row
-- with a lower id can become visible after a reader moved past it. Each row therefore records the id of the
-- transaction that inserted it, and the feed reads in (xid, id) order only rows whose transaction is below the
-- reading snapshot's xmin: every such transaction has ended, so no later commit can add a row behind the cursor.
-- Rows stored before this migration all get the migration's own transaction id (a constant default is evaluated
-- once, without rewriting the table); they are older than any feed cursor, which starts at a restore's snapshot.
ALTER TABLE orders ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX orders_xid_id_idx ON orders (xid, id);

-- The wake-up: one notification per inserting statement, carrying nothing (the feed reads the rows itself; a
-- payload would stop at 8,000 bytes anyway). PostgreSQL delivers it at commit and folds identical notifications
-- of one transaction into one.
CREATE FUNCTION notify_orders_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_committed', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER orders_committed AFTER INSERT ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION notify_orders_committed();
