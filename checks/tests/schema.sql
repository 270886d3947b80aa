-- The schema the query macros in tests/ are checked against (offline data in .sqlx/).
CREATE TABLE IF NOT EXISTS macro_items (id bigint PRIMARY KEY, name text NOT NULL);
