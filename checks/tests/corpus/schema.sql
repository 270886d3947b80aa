-- Schema for the statement-routing corpus (tests/corpus/corpus.jsonl).
-- Run once on the PRIMARY as superuser `postgres` in database `postgres`:
--   psql -X -v ON_ERROR_STOP=1 -d postgres -f tests/corpus/schema.sql
-- Needs only PostgreSQL 15 core (no extensions). Re-running it resets the schema.

DROP SCHEMA IF EXISTS reporting CASCADE;
DROP TABLE IF EXISTS
    audit_log, events, jobs, sessions, comments, post_tags, posts, tags,
    inventory, order_items, orders, products, categories, accounts, users,
    settings, counters, measurements, reservations, "group",
    crm_contact, crm_company, schema_migrations, ar_internal_metadata,
    __diesel_schema_migrations, _sqlx_migrations, invoices
    CASCADE;
DROP SEQUENCE IF EXISTS invoice_seq;
DROP FUNCTION IF EXISTS user_order_total(int), active_user_count(),
    get_setting(text), user_orders(bigint), bump_counter(),
    order_status_label(order_status), audit_orders() CASCADE;
DROP PROCEDURE IF EXISTS report_noop(), archive_old_jobs(int);
DROP TYPE IF EXISTS user_role, order_status, job_status, account_status CASCADE;

-- ---------------------------------------------------------------- types
CREATE TYPE user_role AS ENUM ('member', 'editor', 'admin');
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded');
CREATE TYPE job_status AS ENUM ('queued', 'running', 'done', 'failed');
CREATE TYPE account_status AS ENUM ('open', 'frozen', 'closed');

CREATE SEQUENCE invoice_seq START 1000;

-- ---------------------------------------------------------------- tables
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    username    text,
    role        user_role NOT NULL DEFAULT 'member',
    is_active   boolean NOT NULL DEFAULT true,
    is_staff    boolean NOT NULL DEFAULT false,
    country     char(2),
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    last_login  timestamptz,
    deleted_at  timestamptz
);

CREATE TABLE accounts (
    id          serial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    currency    char(3) NOT NULL DEFAULT 'EUR',
    balance     numeric(12,2) NOT NULL DEFAULT 0,
    status      account_status NOT NULL DEFAULT 'open',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE categories (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    slug        text NOT NULL UNIQUE,
    parent_id   int REFERENCES categories(id)
);

CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text,
    category_id int REFERENCES categories(id),
    price       numeric(10,2) NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    attrs       jsonb NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    status      order_status NOT NULL DEFAULT 'pending',
    total       numeric(12,2) NOT NULL DEFAULT 0,
    currency    char(3) NOT NULL DEFAULT 'EUR',
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    shipped_at  timestamptz
);

CREATE TABLE order_items (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id  int NOT NULL REFERENCES products(id),
    quantity    int NOT NULL CHECK (quantity > 0),
    unit_price  numeric(10,2) NOT NULL
);

CREATE TABLE inventory (
    product_id  int NOT NULL REFERENCES products(id),
    warehouse   text NOT NULL,
    quantity    int NOT NULL DEFAULT 0,
    reserved    int NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, warehouse)
);

CREATE TABLE tags (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE
);

CREATE TABLE posts (
    id            bigserial PRIMARY KEY,
    author_id     bigint NOT NULL REFERENCES users(id),
    title         text NOT NULL,
    slug          text NOT NULL UNIQUE,
    body          text NOT NULL DEFAULT '',
    published     boolean NOT NULL DEFAULT false,
    published_at  timestamptz,
    view_count    int NOT NULL DEFAULT 0,
    labels        text[] NOT NULL DEFAULT '{}',
    search_vector tsvector GENERATED ALWAYS AS
        (to_tsvector('english', coalesce(title, '') || ' ' || coalesce(body, ''))) STORED
);

CREATE TABLE post_tags (
    post_id     bigint NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    tag_id      int NOT NULL REFERENCES tags(id),
    PRIMARY KEY (post_id, tag_id)
);

CREATE TABLE comments (
    id          bigserial PRIMARY KEY,
    post_id     bigint NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users(id),
    parent_id   bigint REFERENCES comments(id),
    body        text NOT NULL,
    approved    boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    token       text NOT NULL UNIQUE,
    ip          inet,
    user_agent  text,
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL DEFAULT 'default',
    kind        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    status      job_status NOT NULL DEFAULT 'queued',
    priority    int NOT NULL DEFAULT 0,
    attempts    int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL DEFAULT 5,
    run_at      timestamptz NOT NULL DEFAULT now(),
    locked_at   timestamptz,
    locked_by   text,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    user_id     bigint REFERENCES users(id),
    event_type  text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    table_name  text NOT NULL,
    row_id      bigint,
    action      text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
    changed_by  text NOT NULL DEFAULT current_user,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    old_data    jsonb,
    new_data    jsonb
);

CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE counters (
    id          int PRIMARY KEY,
    name        text NOT NULL,
    n           int NOT NULL DEFAULT 0
);

CREATE TABLE invoices (
    id          bigint PRIMARY KEY DEFAULT nextval('invoice_seq'),
    order_id    bigint NOT NULL REFERENCES orders(id),
    amount      numeric(12,2) NOT NULL,
    issued_on   date NOT NULL DEFAULT current_date,
    paid        boolean NOT NULL DEFAULT false
);

-- Range-partitioned table.
CREATE TABLE measurements (
    device_id   int NOT NULL,
    recorded_at timestamptz NOT NULL,
    value       double precision NOT NULL,
    unit        text NOT NULL DEFAULT 'C'
) PARTITION BY RANGE (recorded_at);
CREATE TABLE measurements_2024 PARTITION OF measurements
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurements_default PARTITION OF measurements DEFAULT;

-- Range type column.
CREATE TABLE reservations (
    id          serial PRIMARY KEY,
    room        text NOT NULL,
    user_id     bigint REFERENCES users(id),
    during      tstzrange NOT NULL,
    EXCLUDE USING gist (during WITH &&) WHERE (room = 'boardroom')
);

-- Identifiers that look like SQL keywords / functions.
CREATE TABLE "group" (
    id          int PRIMARY KEY,
    "update"    text,
    "nextval"   bigint,
    "for"       text,
    "select"    boolean NOT NULL DEFAULT false,
    "Name"      text
);

-- Django-style tables.
CREATE TABLE crm_company (
    id          serial PRIMARY KEY,
    name        varchar(200) NOT NULL,
    website     varchar(200) NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE crm_contact (
    id          serial PRIMARY KEY,
    company_id  int REFERENCES crm_company(id) DEFERRABLE INITIALLY DEFERRED,
    first_name  varchar(100) NOT NULL,
    last_name   varchar(100) NOT NULL,
    email       varchar(254) NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created     timestamptz NOT NULL DEFAULT now()
);

-- Migration bookkeeping tables as created by common tools.
CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
CREATE TABLE ar_internal_metadata (
    key varchar PRIMARY KEY, value varchar,
    created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL
);
CREATE TABLE __diesel_schema_migrations (
    version varchar(50) PRIMARY KEY,
    run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE _sqlx_migrations (
    version bigint PRIMARY KEY,
    description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(),
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);

CREATE SCHEMA reporting;
CREATE TABLE reporting.monthly_revenue (
    month       date PRIMARY KEY,
    revenue     numeric(14,2) NOT NULL,
    orders      int NOT NULL
);

-- ---------------------------------------------------------------- indexes
CREATE INDEX orders_user_id_idx ON orders (user_id);
CREATE INDEX orders_created_at_idx ON orders (created_at DESC);
CREATE INDEX order_items_order_id_idx ON order_items (order_id);
CREATE INDEX products_tags_idx ON products USING gin (tags);
CREATE INDEX products_attrs_idx ON products USING gin (attrs jsonb_path_ops);
CREATE INDEX posts_search_idx ON posts USING gin (search_vector);
CREATE INDEX comments_post_id_idx ON comments (post_id);
CREATE INDEX events_payload_idx ON events USING gin (payload);
CREATE INDEX events_user_time_idx ON events (user_id, occurred_at);
CREATE INDEX jobs_fetch_idx ON jobs (queue, priority DESC, run_at) WHERE status = 'queued';
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX users_lower_email_idx ON users (lower(email));
CREATE INDEX measurements_device_idx ON measurements (device_id, recorded_at);

-- ---------------------------------------------------------------- data
INSERT INTO users (email, name, username, role, is_active, is_staff, country, metadata, created_at, last_login)
SELECT 'user' || i || '@example.com',
       'User ' || i,
       'user_' || i,
       (ARRAY['member','member','member','editor','admin']::user_role[])[1 + i % 5],
       i % 7 <> 0,
       i % 20 = 0,
       (ARRAY['DE','FR','US','GB','NL','SE'])[1 + i % 6],
       jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + i % 3],
                          'newsletter', i % 2 = 0,
                          'prefs', jsonb_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END)),
       timestamptz '2024-01-01' + i * interval '1 day',
       CASE WHEN i % 3 = 0 THEN NULL ELSE timestamptz '2025-06-01' + i * interval '1 hour' END
FROM generate_series(1, 200) AS i;
UPDATE users SET email = 'a@b.c' WHERE id = 1;

INSERT INTO accounts (user_id, currency, balance, status)
SELECT i, (ARRAY['EUR','USD','GBP'])[1 + i % 3], round((i * 37.5)::numeric % 5000, 2),
       (ARRAY['open','open','open','frozen','closed']::account_status[])[1 + i % 5]
FROM generate_series(1, 200) AS i;

INSERT INTO categories (name, slug, parent_id) VALUES
    ('Electronics', 'electronics', NULL),
    ('Books', 'books', NULL),
    ('Home', 'home', NULL),
    ('Laptops', 'laptops', 1),
    ('Phones', 'phones', 1),
    ('Fiction', 'fiction', 2),
    ('Science', 'science', 2),
    ('Kitchen', 'kitchen', 3),
    ('Ultrabooks', 'ultrabooks', 4),
    ('Accessories', 'accessories', 1);

INSERT INTO products (sku, name, description, category_id, price, tags, attrs, active)
SELECT 'SKU-' || lpad(i::text, 5, '0'),
       'Product ' || i,
       'Description of product ' || i || CASE WHEN i % 4 = 0 THEN ' waterproof and durable' ELSE ' lightweight' END,
       1 + i % 10,
       round((5 + i * 3.75)::numeric, 2),
       CASE i % 4 WHEN 0 THEN ARRAY['sale','new'] WHEN 1 THEN ARRAY['new'] WHEN 2 THEN ARRAY['clearance'] ELSE '{}' END,
       jsonb_build_object('color', (ARRAY['red','green','blue','black'])[1 + i % 4],
                          'weight', i * 10,
                          'dimensions', jsonb_build_object('w', i % 50, 'h', i % 30)),
       i % 11 <> 0
FROM generate_series(1, 100) AS i;

INSERT INTO orders (user_id, status, total, currency, note, created_at, shipped_at)
SELECT 1 + (i * 7) % 200,
       (ARRAY['pending','paid','shipped','delivered','cancelled','refunded']::order_status[])[1 + i % 6],
       0,
       'EUR',
       CASE WHEN i % 10 = 0 THEN 'gift wrap please' END,
       timestamptz '2025-01-01' + i * interval '13 hours',
       CASE WHEN i % 6 IN (2, 3) THEN timestamptz '2025-01-03' + i * interval '13 hours' END
FROM generate_series(1, 500) AS i;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT 1 + (i % 500), 1 + (i * 13) % 100, 1 + i % 4, round((5 + ((i * 13) % 100 + 1) * 3.75)::numeric, 2)
FROM generate_series(1, 1500) AS i;

UPDATE orders o SET total = s.sum
FROM (SELECT order_id, sum(quantity * unit_price) AS sum FROM order_items GROUP BY order_id) s
WHERE s.order_id = o.id;

INSERT INTO inventory (product_id, warehouse, quantity, reserved)
SELECT p, w, (p * 17) % 250, (p * 3) % 10
FROM generate_series(1, 100) AS p, unnest(ARRAY['berlin','paris','austin']) AS w;

INSERT INTO tags (name)
SELECT unnest(ARRAY['rust','postgres','sql','performance','replication','tutorial','release','security','databases','web']);

INSERT INTO posts (author_id, title, slug, body, published, published_at, view_count, labels)
SELECT 1 + (i * 3) % 200,
       'Post number ' || i || CASE WHEN i % 3 = 0 THEN ': PostgreSQL replication tips' ELSE ': Rust async patterns' END,
       'post-' || i,
       'Body of post ' || i || '. It talks about ' ||
           CASE WHEN i % 2 = 0 THEN 'streaming replication and hot standby servers.' ELSE 'connection pools, tokio and sqlx.' END,
       i % 5 <> 0,
       CASE WHEN i % 5 <> 0 THEN timestamptz '2025-02-01' + i * interval '1 day' END,
       i * 11 % 997,
       CASE WHEN i % 2 = 0 THEN ARRAY['postgres','ops'] ELSE ARRAY['rust'] END
FROM generate_series(1, 120) AS i;

INSERT INTO post_tags (post_id, tag_id)
SELECT p, 1 + (p + k) % 10 FROM generate_series(1, 120) AS p, generate_series(0, 2) AS k;

INSERT INTO comments (post_id, user_id, parent_id, body, approved, created_at)
SELECT 1 + i % 120, 1 + (i * 5) % 200, NULL, 'Comment ' || i || ' great article!', i % 9 <> 0,
       timestamptz '2025-03-01' + i * interval '2 hours'
FROM generate_series(1, 400) AS i;
INSERT INTO comments (post_id, user_id, parent_id, body, created_at)
SELECT c.post_id, 1 + (c.id * 11) % 200, c.id, 'Reply to comment ' || c.id, c.created_at + interval '1 hour'
FROM comments c WHERE c.id % 4 = 0;

INSERT INTO sessions (id, user_id, token, ip, user_agent, data, created_at, expires_at)
SELECT md5('session' || i)::uuid, 1 + i % 200, md5('token' || i), ('10.0.' || (i % 255) || '.' || (i % 200 + 1))::inet,
       CASE WHEN i % 2 = 0 THEN 'Mozilla/5.0' ELSE 'curl/8.0' END,
       jsonb_build_object('csrf', md5('csrf' || i), 'cart', jsonb_build_array(i, i + 1)),
       timestamptz '2025-06-01' + i * interval '1 hour',
       timestamptz '2025-06-01' + i * interval '1 hour' + interval '30 days'
FROM generate_series(1, 300) AS i;

INSERT INTO jobs (queue, kind, payload, status, priority, attempts, run_at, locked_at, locked_by, last_error)
SELECT (ARRAY['default','mailers','reports'])[1 + i % 3],
       (ARRAY['send_email','generate_report','sync_inventory','charge_card'])[1 + i % 4],
       jsonb_build_object('user_id', 1 + i % 200, 'attempt', i % 3),
       (ARRAY['queued','queued','running','done','failed']::job_status[])[1 + i % 5],
       i % 10,
       i % 4,
       timestamptz '2025-01-01' + i * interval '10 minutes',
       CASE WHEN i % 5 = 2 THEN timestamptz '2025-01-01' + i * interval '10 minutes' END,
       CASE WHEN i % 5 = 2 THEN 'worker-' || (i % 4) END,
       CASE WHEN i % 5 = 4 THEN 'timeout after 30s' END
FROM generate_series(1, 250) AS i;

INSERT INTO events (user_id, event_type, payload, occurred_at)
SELECT 1 + i % 200,
       (ARRAY['page_view','signup','login','purchase','logout'])[1 + i % 5],
       jsonb_build_object('path', '/products/' || (i % 100), 'amount', i % 50,
                          'tags', jsonb_build_array('web', CASE WHEN i % 2 = 0 THEN 'mobile' ELSE 'desktop' END),
                          'device', jsonb_build_object('os', (ARRAY['ios','android','linux','mac'])[1 + i % 4])),
       timestamptz '2025-05-01' + i * interval '17 minutes'
FROM generate_series(1, 1000) AS i;

INSERT INTO audit_log (table_name, row_id, action, changed_by, changed_at, old_data, new_data)
SELECT (ARRAY['users','orders','products'])[1 + i % 3], i, (ARRAY['INSERT','UPDATE','DELETE'])[1 + i % 3],
       'app', timestamptz '2025-04-01' + i * interval '1 hour',
       CASE WHEN i % 3 <> 0 THEN jsonb_build_object('v', i - 1) END,
       CASE WHEN i % 3 <> 2 THEN jsonb_build_object('v', i) END
FROM generate_series(1, 150) AS i;

INSERT INTO settings (key, value) VALUES
    ('site_name', 'Partypool Shop'),
    ('maintenance_mode', 'false'),
    ('max_upload_mb', '25'),
    ('default_currency', 'EUR'),
    ('feature.new_checkout', 'true'),
    ('support_email', 'help@example.com');

INSERT INTO counters (id, name, n) VALUES (1, 'page_hits', 0), (2, 'signups', 42), (3, 'downloads', 7);

INSERT INTO invoices (order_id, amount, issued_on, paid)
SELECT id, total, created_at::date, status IN ('paid','shipped','delivered')
FROM orders WHERE id % 2 = 0;

INSERT INTO measurements (device_id, recorded_at, value, unit)
SELECT 1 + i % 8, timestamptz '2024-10-01' + i * interval '6 hours', 20 + (i % 15) * 0.5, 'C'
FROM generate_series(1, 800) AS i;

INSERT INTO reservations (room, user_id, during)
SELECT CASE WHEN i % 2 = 0 THEN 'boardroom' ELSE 'focus-' || (i % 5) END, 1 + i % 200,
       tstzrange(timestamptz '2025-07-01 09:00' + i * interval '3 hours',
                 timestamptz '2025-07-01 10:00' + i * interval '3 hours')
FROM generate_series(1, 60) AS i;

INSERT INTO "group" (id, "update", "nextval", "for", "select", "Name")
SELECT i, 'update ' || i, i * 100, 'for ' || i, i % 2 = 0, 'Group ' || i
FROM generate_series(1, 20) AS i;

INSERT INTO crm_company (name, website)
SELECT 'Company ' || i, 'https://company' || i || '.example' FROM generate_series(1, 30) AS i;
INSERT INTO crm_contact (company_id, first_name, last_name, email, is_active)
SELECT 1 + i % 30, 'First' || i, 'Last' || i, 'contact' || i || '@example.org', i % 6 <> 0
FROM generate_series(1, 120) AS i;

INSERT INTO schema_migrations (version) VALUES ('20240101120000'), ('20240215093000'), ('20250301101500');
INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
VALUES ('environment', 'production', now(), now());
INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000'), ('20240101000000'), ('20240601000000');
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
VALUES (20240101000000, 'init', true, '\x00'::bytea, 1234567),
       (20240601000000, 'add jobs', true, '\x01'::bytea, 234567);

INSERT INTO reporting.monthly_revenue (month, revenue, orders)
SELECT date_trunc('month', created_at)::date, sum(total), count(*)
FROM orders GROUP BY 1;

-- ---------------------------------------------------------------- views
CREATE VIEW active_users AS
    SELECT id, email, name, role, created_at FROM users WHERE is_active AND deleted_at IS NULL;

CREATE VIEW order_summaries AS
    SELECT o.id AS order_id, o.user_id, u.email, o.status, o.total, count(oi.id) AS item_count
    FROM orders o
    JOIN users u ON u.id = o.user_id
    LEFT JOIN order_items oi ON oi.order_id = o.id
    GROUP BY o.id, u.email;

CREATE MATERIALIZED VIEW daily_sales AS
    SELECT created_at::date AS day, count(*) AS orders, sum(total) AS revenue
    FROM orders WHERE status <> 'cancelled'
    GROUP BY 1;
CREATE UNIQUE INDEX daily_sales_day_idx ON daily_sales (day);

-- ---------------------------------------------------------------- routines
-- Read-only SQL function.
CREATE FUNCTION user_order_total(uid int) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(total), 0) FROM orders WHERE user_id = uid AND status <> 'cancelled'
$$;

-- Read-only set-returning SQL function.
CREATE FUNCTION user_orders(uid bigint) RETURNS SETOF orders
LANGUAGE sql STABLE AS $$
    SELECT * FROM orders WHERE user_id = uid ORDER BY created_at
$$;

-- Read-only plpgsql functions.
CREATE FUNCTION active_user_count() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c bigint;
BEGIN
    SELECT count(*) INTO c FROM users WHERE is_active;
    RETURN c;
END
$$;

CREATE FUNCTION get_setting(k text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT value FROM settings WHERE key = k);
END
$$;

CREATE FUNCTION order_status_label(s order_status) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE s WHEN 'pending' THEN 'Awaiting payment' WHEN 'paid' THEN 'Paid'
                  WHEN 'shipped' THEN 'On its way' ELSE initcap(s::text) END
$$;

-- Read-only procedure.
CREATE PROCEDURE report_noop() LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$;

-- Procedure that writes.
CREATE PROCEDURE archive_old_jobs(keep_days int) LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM jobs WHERE status = 'done' AND run_at < now() - make_interval(days => keep_days);
END
$$;

-- A function that WRITES but is called like a read.
CREATE FUNCTION bump_counter() RETURNS int LANGUAGE sql AS $$
    UPDATE counters SET n = n + 1 WHERE id = 1 RETURNING n
$$;

-- Audit trigger on orders.
CREATE FUNCTION audit_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (table_name, row_id, action, old_data, new_data)
    VALUES ('orders', coalesce(NEW.id, OLD.id), TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN coalesce(NEW, OLD);
END
$$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION audit_orders();

COMMENT ON TABLE jobs IS 'Background job queue (SKIP LOCKED workers)';

ANALYZE;
