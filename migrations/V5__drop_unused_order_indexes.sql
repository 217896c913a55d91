-- No query of the service searches orders by customer_id or track_number, yet each of these indexes cost every
-- insert a B-tree entry. The columns stay: the
-- operator listing shows them. An operator who searches by one creates its index, e.g.
--   CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);
-- The indexes that stay each serve a query: the primary key (lookups by order_uid, duplicates), `id` (listing and
-- restore, newest first) and `(xid, id)` (the change feed).
DROP INDEX IF EXISTS orders_customer_id_idx;
DROP INDEX IF EXISTS orders_track_number_idx;
