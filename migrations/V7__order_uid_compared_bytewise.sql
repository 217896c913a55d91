-- order_uid is an identifier, never sorted for people, and equal under any deterministic collation exactly when its
-- bytes are equal. Under the "C" collation each comparison in the primary key (every insert, every lookup) is a
-- memcmp instead of a locale's string comparison, which is the dearer the richer the database's locale.
-- PostgreSQL rebuilds the primary key index once for this change; the table itself is not rewritten.
ALTER TABLE orders ALTER COLUMN order_uid TYPE text COLLATE "C";
