-- Schema of the MariaDB/MySQL statement corpus (tests/corpus/mysql/corpus.jsonl).
-- MariaDB 10.11, InnoDB. Run as root on the primary, in database `app`:
--   mariadb -uroot --socket=... app < schema.sql
-- Re-runnable: everything is dropped first. Stored functions need
-- --log-bin-trust-function-creators (the test servers run with it).

SET FOREIGN_KEY_CHECKS = 0;

DROP VIEW IF EXISTS active_users;
DROP VIEW IF EXISTS order_totals;
DROP VIEW IF EXISTS published_posts;
DROP VIEW IF EXISTS product_stock;
DROP FUNCTION IF EXISTS user_order_total;
DROP FUNCTION IF EXISTS slugify;
DROP FUNCTION IF EXISTS bump_counter;
DROP PROCEDURE IF EXISTS report_noop;
DROP PROCEDURE IF EXISTS user_report;
DROP PROCEDURE IF EXISTS archive_old_jobs;
DROP TRIGGER IF EXISTS orders_after_insert;
DROP SEQUENCE IF EXISTS invoice_seq;
DROP SEQUENCE IF EXISTS ticket_seq;
DROP TABLE IF EXISTS users, posts, comments, tags, post_tags, orders, order_items, products,
    categories, accounts, jobs, sessions, settings, counters, audit_log, events, inventory,
    invoices, schema_migrations, ar_internal_metadata, __diesel_schema_migrations,
    _sqlx_migrations, django_migrations, auth_user, auth_group, auth_user_groups,
    django_session, django_content_type, seaql_migrations, scratch, scratch_old, users_archive,
    jobs_archive, daily_stats;

CREATE TABLE categories (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    parent_id INT UNSIGNED NULL,
    name VARCHAR(100) NOT NULL,
    slug VARCHAR(100) NOT NULL,
    UNIQUE KEY categories_slug (slug),
    KEY categories_parent (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    name VARCHAR(100) NOT NULL,
    role VARCHAR(20) NOT NULL DEFAULT 'member',
    is_active TINYINT(1) NOT NULL DEFAULT 1,
    login_count INT NOT NULL DEFAULT 0,
    profile JSON NULL,
    last_login_at DATETIME NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME NULL,
    UNIQUE KEY index_users_on_email (email),
    KEY index_users_on_role (role),
    FULLTEXT KEY users_name_ft (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE users_archive LIKE users;

CREATE TABLE posts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    category_id INT UNSIGNED NULL,
    title VARCHAR(200) NOT NULL,
    slug VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    published TINYINT(1) NOT NULL DEFAULT 0,
    views INT UNSIGNED NOT NULL DEFAULT 0,
    meta JSON NULL,
    published_at DATETIME NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY posts_slug (slug),
    KEY posts_user_id (user_id),
    KEY posts_published_at (published, published_at),
    FULLTEXT KEY posts_ft (title, body),
    CONSTRAINT posts_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE comments (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    post_id BIGINT UNSIGNED NOT NULL,
    user_id BIGINT UNSIGNED NULL,
    parent_id BIGINT UNSIGNED NULL,
    body TEXT NOT NULL,
    approved TINYINT(1) NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY comments_post_id (post_id),
    KEY comments_user_id (user_id),
    CONSTRAINT comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tags (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL,
    UNIQUE KEY tags_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE post_tags (
    post_id BIGINT UNSIGNED NOT NULL,
    tag_id INT UNSIGNED NOT NULL,
    PRIMARY KEY (post_id, tag_id),
    KEY post_tags_tag (tag_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE products (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku VARCHAR(40) NOT NULL,
    name VARCHAR(200) NOT NULL,
    category_id INT UNSIGNED NULL,
    price DECIMAL(10,2) NOT NULL,
    active TINYINT(1) NOT NULL DEFAULT 1,
    attrs JSON NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY products_sku (sku),
    KEY products_category (category_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE orders (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    status ENUM('pending','paid','shipped','cancelled','refunded') NOT NULL DEFAULT 'pending',
    total DECIMAL(12,2) NOT NULL DEFAULT 0,
    currency CHAR(3) NOT NULL DEFAULT 'EUR',
    invoice_no BIGINT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    KEY orders_user_id (user_id),
    KEY orders_status_created (status, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE order_items (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id BIGINT UNSIGNED NOT NULL,
    product_id BIGINT UNSIGNED NOT NULL,
    quantity INT NOT NULL DEFAULT 1,
    unit_price DECIMAL(10,2) NOT NULL,
    KEY order_items_order (order_id),
    KEY order_items_product (product_id),
    CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE invoices (
    id BIGINT NOT NULL PRIMARY KEY,
    order_id BIGINT UNSIGNED NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    issued_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE accounts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    balance DECIMAL(14,2) NOT NULL DEFAULT 0,
    currency CHAR(3) NOT NULL DEFAULT 'EUR',
    lock_version INT NOT NULL DEFAULT 0,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    UNIQUE KEY accounts_user_currency (user_id, currency)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE jobs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    queue VARCHAR(50) NOT NULL DEFAULT 'default',
    payload JSON NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'queued',
    priority INT NOT NULL DEFAULT 0,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    run_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    locked_at DATETIME NULL,
    locked_by VARCHAR(100) NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY jobs_pick (queue, status, run_at),
    KEY jobs_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE jobs_archive LIKE jobs;

CREATE TABLE sessions (
    id VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id BIGINT UNSIGNED NULL,
    data BLOB NOT NULL,
    expires_at DATETIME NOT NULL,
    KEY sessions_expires (expires_at),
    KEY sessions_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE settings (
    name VARCHAR(100) NOT NULL PRIMARY KEY,
    value TEXT NULL,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE counters (
    name VARCHAR(100) NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE audit_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor_id BIGINT UNSIGNED NULL,
    action VARCHAR(50) NOT NULL,
    entity VARCHAR(50) NOT NULL,
    entity_id BIGINT NULL,
    details JSON NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY audit_entity (entity, entity_id),
    KEY audit_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE events (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind VARCHAR(50) NOT NULL,
    user_id BIGINT UNSIGNED NULL,
    payload JSON NULL,
    occurred_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY events_kind_time (kind, occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE inventory (
    product_id BIGINT UNSIGNED NOT NULL,
    warehouse VARCHAR(20) NOT NULL,
    quantity INT NOT NULL DEFAULT 0,
    reserved INT NOT NULL DEFAULT 0,
    PRIMARY KEY (product_id, warehouse)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE daily_stats (
    day DATE NOT NULL PRIMARY KEY,
    signups INT NOT NULL DEFAULT 0,
    orders INT NOT NULL DEFAULT 0,
    revenue DECIMAL(14,2) NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE scratch (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    label VARCHAR(50) NULL,
    n INT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Rails / ActiveRecord
CREATE TABLE schema_migrations (
    version VARCHAR(255) NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE ar_internal_metadata (
    `key` VARCHAR(255) NOT NULL PRIMARY KEY,
    value VARCHAR(255) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Diesel
CREATE TABLE __diesel_schema_migrations (
    version VARCHAR(50) NOT NULL PRIMARY KEY,
    run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- sqlx
CREATE TABLE _sqlx_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- SeaORM
CREATE TABLE seaql_migrations (
    version VARCHAR(255) NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Django
CREATE TABLE django_migrations (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    applied DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE django_content_type (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_label VARCHAR(100) NOT NULL,
    model VARCHAR(100) NOT NULL,
    UNIQUE KEY django_content_type_app_label_model (app_label, model)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE auth_user (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    password VARCHAR(128) NOT NULL,
    last_login DATETIME(6) NULL,
    is_superuser TINYINT(1) NOT NULL,
    username VARCHAR(150) NOT NULL,
    first_name VARCHAR(150) NOT NULL,
    last_name VARCHAR(150) NOT NULL,
    email VARCHAR(254) NOT NULL,
    is_staff TINYINT(1) NOT NULL,
    is_active TINYINT(1) NOT NULL,
    date_joined DATETIME(6) NOT NULL,
    UNIQUE KEY username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE auth_group (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(150) NOT NULL,
    UNIQUE KEY name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE auth_user_groups (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id INT NOT NULL,
    group_id INT NOT NULL,
    UNIQUE KEY auth_user_groups_user_id_group_id (user_id, group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE django_session (
    session_key VARCHAR(40) NOT NULL PRIMARY KEY,
    session_data LONGTEXT NOT NULL,
    expire_date DATETIME(6) NOT NULL,
    KEY django_session_expire_date_a5c62663 (expire_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE SEQUENCE invoice_seq START WITH 1000 INCREMENT BY 1 CACHE 10 ENGINE=InnoDB;
CREATE SEQUENCE ticket_seq START WITH 1 INCREMENT BY 5 NOCACHE ENGINE=InnoDB;

-- Seed data
INSERT INTO categories (id, parent_id, name, slug) VALUES
    (1, NULL, 'Books', 'books'), (2, 1, 'Fiction', 'fiction'), (3, 2, 'Fantasy', 'fantasy'),
    (4, 1, 'Non-fiction', 'non-fiction'), (5, NULL, 'Games', 'games'), (6, 5, 'Board games', 'board-games');

INSERT INTO users (id, email, name, role, is_active, login_count, profile, last_login_at, created_at) VALUES
    (1, 'alice@example.com', 'Alice', 'admin', 1, 12, '{"lang": "en", "tz": "UTC", "tags": ["staff", "beta"]}', '2024-05-01 10:00:00', '2024-01-01 09:00:00'),
    (2, 'bob@example.com', 'Bob', 'member', 1, 3, '{"lang": "de", "tz": "Europe/Berlin", "tags": []}', '2024-05-02 11:00:00', '2024-01-15 12:00:00'),
    (3, 'carol@example.com', 'Carol', 'member', 1, 7, '{"lang": "fr", "tags": ["beta"]}', NULL, '2024-02-01 08:30:00'),
    (4, 'dave@example.com', 'Dave', 'member', 0, 0, NULL, NULL, '2024-03-10 17:45:00'),
    (5, 'erin@example.com', 'Erin', 'moderator', 1, 25, '{"lang": "en", "newsletter": true}', '2024-05-03 07:15:00', '2024-03-20 14:00:00'),
    (6, 'frank@example.com', 'Frank', 'member', 1, 1, '{}', '2024-04-30 22:00:00', '2024-04-01 10:10:00');

INSERT INTO posts (id, user_id, category_id, title, slug, body, published, views, meta, published_at, created_at) VALUES
    (1, 1, 2, 'Hello world', 'hello-world', 'The first post. SELECT is not a keyword here.', 1, 120, '{"featured": true, "words": 8}', '2024-01-02 10:00:00', '2024-01-02 09:00:00'),
    (2, 1, 3, 'Dragons and databases', 'dragons-and-databases', 'On replication and fantasy.', 1, 45, '{"featured": false, "words": 4}', '2024-02-10 10:00:00', '2024-02-09 09:00:00'),
    (3, 2, 4, 'Draft: DELETE FROM users', 'draft-delete', 'Not published yet; FOR UPDATE in text.', 0, 0, NULL, NULL, '2024-03-01 09:00:00'),
    (4, 3, 6, 'Best board games 2024', 'board-games-2024', 'Catan, Azul, Wingspan.', 1, 300, '{"featured": true, "words": 3}', '2024-04-01 10:00:00', '2024-03-30 09:00:00'),
    (5, 5, 2, 'Moderation notes', 'moderation-notes', 'Be kind.', 1, 12, '{"words": 2}', '2024-04-15 10:00:00', '2024-04-15 09:00:00');

INSERT INTO comments (id, post_id, user_id, parent_id, body, approved, created_at) VALUES
    (1, 1, 2, NULL, 'Nice post!', 1, '2024-01-03 10:00:00'),
    (2, 1, 3, 1, 'Agreed.', 1, '2024-01-03 11:00:00'),
    (3, 2, 2, NULL, 'Dragons!', 1, '2024-02-11 10:00:00'),
    (4, 4, 6, NULL, 'Spam spam', 0, '2024-04-02 10:00:00'),
    (5, 4, 1, NULL, 'Wingspan is great', 1, '2024-04-03 10:00:00');

INSERT INTO tags (id, name) VALUES (1, 'rust'), (2, 'sql'), (3, 'games'), (4, 'meta'), (5, 'fantasy');
INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1), (1, 2), (1, 4), (2, 2), (2, 5), (4, 3), (5, 4);

INSERT INTO products (id, sku, name, category_id, price, active, attrs) VALUES
    (1, 'BK-001', 'The Hobbit', 3, 12.50, 1, '{"pages": 310, "lang": "en"}'),
    (2, 'BK-002', 'SQL Antipatterns', 4, 34.90, 1, '{"pages": 328, "lang": "en"}'),
    (3, 'GM-001', 'Catan', 6, 39.99, 1, '{"players": [3, 4], "age": 10}'),
    (4, 'GM-002', 'Azul', 6, 29.99, 1, '{"players": [2, 4], "age": 8}'),
    (5, 'BK-003', 'Old Almanac', 4, 5.00, 0, NULL);

INSERT INTO orders (id, user_id, status, total, currency, invoice_no, created_at) VALUES
    (1, 1, 'paid', 52.49, 'EUR', 1, '2024-04-01 12:00:00'),
    (2, 2, 'pending', 34.90, 'EUR', NULL, '2024-04-20 12:00:00'),
    (3, 1, 'shipped', 29.99, 'EUR', 2, '2024-04-22 12:00:00'),
    (4, 3, 'cancelled', 12.50, 'USD', NULL, '2024-04-25 12:00:00'),
    (5, 5, 'paid', 79.98, 'EUR', 3, '2024-05-01 12:00:00');

INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) VALUES
    (1, 1, 1, 1, 12.50), (2, 1, 3, 1, 39.99), (3, 2, 2, 1, 34.90), (4, 3, 4, 1, 29.99),
    (5, 4, 1, 1, 12.50), (6, 5, 3, 2, 39.99);

INSERT INTO invoices (id, order_id, amount, issued_at) VALUES
    (1, 1, 52.49, '2024-04-01 12:05:00'), (2, 3, 29.99, '2024-04-22 12:05:00'), (3, 5, 79.98, '2024-05-01 12:05:00');

INSERT INTO accounts (id, user_id, balance, currency, lock_version) VALUES
    (1, 1, 100.00, 'EUR', 0), (2, 2, 25.50, 'EUR', 3), (3, 3, 0.00, 'USD', 1), (4, 5, 999.99, 'EUR', 7);

INSERT INTO jobs (id, queue, payload, status, priority, attempts, run_at, created_at) VALUES
    (1, 'default', '{"type": "send_email", "user_id": 1}', 'queued', 0, 0, '2024-05-01 00:00:00', '2024-05-01 00:00:00'),
    (2, 'default', '{"type": "send_email", "user_id": 2}', 'done', 0, 1, '2024-01-01 00:00:00', '2024-01-01 00:00:00'),
    (3, 'mailers', '{"type": "digest"}', 'queued', 5, 0, '2024-05-02 00:00:00', '2024-05-02 00:00:00'),
    (4, 'default', '{"type": "resize", "image": 42}', 'failed', 0, 3, '2024-02-01 00:00:00', '2024-02-01 00:00:00'),
    (5, 'critical', '{"type": "charge", "order_id": 2}', 'running', 10, 1, '2024-05-03 00:00:00', '2024-05-03 00:00:00');

INSERT INTO sessions (id, user_id, data, expires_at) VALUES
    ('sess-aaa', 1, 'user_id=1', '2030-01-01 00:00:00'),
    ('sess-bbb', 2, 'user_id=2', '2020-01-01 00:00:00'),
    ('sess-ccc', NULL, 'anon', '2030-01-01 00:00:00');

INSERT INTO settings (name, value) VALUES
    ('site_name', 'Partypool demo'), ('maintenance', 'off'), ('max_upload_mb', '25');

INSERT INTO counters (name, value) VALUES ('page_views', 1000), ('signups', 6), ('orders', 5);

INSERT INTO audit_log (id, actor_id, action, entity, entity_id, details, created_at) VALUES
    (1, 1, 'create', 'post', 1, '{"title": "Hello world"}', '2024-01-02 09:00:00'),
    (2, 2, 'update', 'user', 2, '{"field": "name"}', '2024-03-01 09:00:00'),
    (3, 1, 'delete', 'comment', 9, NULL, '2024-04-02 09:00:00');

INSERT INTO events (id, kind, user_id, payload, occurred_at) VALUES
    (1, 'login', 1, '{"ip": "10.0.0.1"}', '2024-05-01 10:00:00'),
    (2, 'login', 2, '{"ip": "10.0.0.2"}', '2024-05-02 11:00:00'),
    (3, 'purchase', 1, '{"order_id": 1, "amount": 52.49}', '2024-04-01 12:00:00'),
    (4, 'logout', 1, NULL, '2024-05-01 18:00:00'),
    (5, 'purchase', 5, '{"order_id": 5, "amount": 79.98}', '2024-05-01 12:00:00');

INSERT INTO inventory (product_id, warehouse, quantity, reserved) VALUES
    (1, 'BER', 10, 1), (1, 'PAR', 4, 0), (2, 'BER', 7, 2), (3, 'BER', 0, 0), (3, 'PAR', 12, 3), (4, 'PAR', 9, 0);

INSERT INTO daily_stats (day, signups, orders, revenue) VALUES
    ('2024-04-01', 1, 1, 52.49), ('2024-04-20', 0, 1, 34.90), ('2024-05-01', 0, 1, 79.98);

INSERT INTO scratch (id, label, n) VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);

INSERT INTO schema_migrations (version) VALUES ('20240101000000'), ('20240201000000'), ('20240301000000');
INSERT INTO ar_internal_metadata (`key`, value, created_at, updated_at) VALUES
    ('environment', 'production', '2024-01-01 00:00:00', '2024-01-01 00:00:00'),
    ('schema_sha1', 'abc123', '2024-01-01 00:00:00', '2024-01-01 00:00:00');
INSERT INTO __diesel_schema_migrations (version, run_on) VALUES
    ('00000000000000', '2024-01-01 00:00:00'), ('20240101120000', '2024-01-01 12:00:00');
INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES
    (20240101000000, 'init', '2024-01-01 00:00:00', TRUE, UNHEX(SHA2('init', 384)), 1234567),
    (20240201000000, 'add posts', '2024-02-01 00:00:00', TRUE, UNHEX(SHA2('add posts', 384)), 7654321);
INSERT INTO seaql_migrations (version, applied_at) VALUES
    ('m20220101_000001_create_table', 1704067200), ('m20240301_000002_add_jobs', 1709251200);
INSERT INTO django_migrations (id, app, name, applied) VALUES
    (1, 'contenttypes', '0001_initial', '2024-01-01 00:00:00'),
    (2, 'auth', '0001_initial', '2024-01-01 00:00:01'),
    (3, 'sessions', '0001_initial', '2024-01-01 00:00:02');
INSERT INTO django_content_type (id, app_label, model) VALUES (1, 'auth', 'user'), (2, 'auth', 'group'), (3, 'sessions', 'session');
INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES
    (1, 'pbkdf2_sha256$600000$salt$hash', '2024-05-01 10:00:00', 1, 'admin', 'Ada', 'Admin', 'admin@example.com', 1, 1, '2024-01-01 00:00:00'),
    (2, 'pbkdf2_sha256$600000$salt$hash2', NULL, 0, 'bob', 'Bob', 'Builder', 'bob@example.com', 0, 1, '2024-01-15 00:00:00');
INSERT INTO auth_group (id, name) VALUES (1, 'editors');
INSERT INTO auth_user_groups (id, user_id, group_id) VALUES (1, 2, 1);
INSERT INTO django_session (session_key, session_data, expire_date) VALUES
    ('abcdefghijklmnopqrstuvwxyz012345', 'e30:1ruH2k:sig', '2030-01-01 00:00:00'),
    ('expiredsessionkey000000000000000', 'e30:1ruH2k:old', '2020-01-01 00:00:00');

-- Views
CREATE VIEW active_users AS
    SELECT id, email, name, role FROM users WHERE is_active = 1 AND deleted_at IS NULL;

CREATE VIEW order_totals AS
    SELECT o.user_id, COUNT(*) AS orders, SUM(o.total) AS total
    FROM orders o WHERE o.status IN ('paid', 'shipped') GROUP BY o.user_id;

CREATE VIEW published_posts AS
    SELECT p.id, p.title, p.slug, p.published_at, u.name AS author
    FROM posts p JOIN users u ON u.id = p.user_id WHERE p.published = 1;

CREATE VIEW product_stock AS
    SELECT p.id, p.sku, COALESCE(SUM(i.quantity - i.reserved), 0) AS available
    FROM products p LEFT JOIN inventory i ON i.product_id = p.id GROUP BY p.id, p.sku;

-- Stored routines
DELIMITER //

CREATE FUNCTION user_order_total(uid BIGINT UNSIGNED) RETURNS DECIMAL(14,2)
    DETERMINISTIC READS SQL DATA
BEGIN
    RETURN (SELECT COALESCE(SUM(total), 0) FROM orders WHERE user_id = uid AND status IN ('paid', 'shipped'));
END //

CREATE FUNCTION slugify(s VARCHAR(200) CHARACTER SET utf8mb4) RETURNS VARCHAR(200) CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    RETURN LOWER(REPLACE(TRIM(s), ' ', '-')) //

-- Writes: the corpus treats it as a write function.
-- The writing routines are SQL SECURITY INVOKER on purpose: with the default (DEFINER, and
-- the definer is root, who holds READ ONLY ADMIN) a CALL by the application user on a
-- read-only replica really deletes rows there (the replica then logs a GTID of its own and
-- GTID strict mode stops replication with error 1950).
CREATE FUNCTION bump_counter(counter_name VARCHAR(100) CHARACTER SET utf8mb4) RETURNS BIGINT
    NOT DETERMINISTIC MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    UPDATE counters SET value = value + 1 WHERE name = counter_name;
    RETURN (SELECT value FROM counters WHERE name = counter_name);
END //

CREATE PROCEDURE report_noop()
    READS SQL DATA
BEGIN
    SELECT COUNT(*) AS users FROM users;
END //

CREATE PROCEDURE user_report(IN uid BIGINT UNSIGNED)
    READS SQL DATA
BEGIN
    SELECT id, status, total FROM orders WHERE user_id = uid ORDER BY id;
END //

CREATE PROCEDURE archive_old_jobs(IN days INT)
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DELETE FROM jobs WHERE status = 'done' AND created_at < NOW() - INTERVAL days DAY;
END //

CREATE TRIGGER orders_after_insert AFTER INSERT ON orders FOR EACH ROW
BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'orders';
END //

DELIMITER ;

SET FOREIGN_KEY_CHECKS = 1;
