-- Every column of `orders` back to the server's default statistics target, as before migration V8: the "before"
-- side of an A/B (bench/analyze_growth.sh, BENCH_VARIANTS of bench/pg_work.sh).
DO $$
DECLARE
    column_name name;
BEGIN
    FOR column_name IN
        SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped
    LOOP
        EXECUTE format('ALTER TABLE orders ALTER COLUMN %I SET STATISTICS -1', column_name);
    END LOOP;
END
$$;
