-- Autovacuum analyzes `orders` each time a tenth more rows were inserted, and each analysis reads a sample of
-- 300 rows per point of the largest statistics target among its columns: 30,000 rows at the default target of 100,
-- with each document in them. Summed over a table's growth this came to as much CPU per order as the insert itself
-- (bench/README.md, 2026-12-07). No query of the service needs detailed statistics of this table: lookups go
-- through the unique primary key, the listings and the restore through `id`, the change feed through `(xid, id)`
-- with generic plans that use no histogram. A target of 10 (a sample of 3,000 rows) still gives the planner each
-- column's width, null fraction, distinct count and a coarse histogram. A column added later must get the same
-- target, or the sample grows back to that column's (tests/api/migrations.rs checks it).
ALTER TABLE orders
    ALTER COLUMN order_uid SET STATISTICS 10,
    ALTER COLUMN document SET STATISTICS 10,
    ALTER COLUMN track_number SET STATISTICS 10,
    ALTER COLUMN customer_id SET STATISTICS 10,
    ALTER COLUMN date_created SET STATISTICS 10,
    ALTER COLUMN stan_sequence SET STATISTICS 10,
    ALTER COLUMN ingested_at SET STATISTICS 10,
    ALTER COLUMN id SET STATISTICS 10,
    ALTER COLUMN xid SET STATISTICS 10;
