//! Built-in function lists per dialect.
//!
//! - *Write or primary-only* functions: calling one makes a statement go to the primary,
//!   whatever else it looks like. Each list entry names the reason.
//! - *Read-only* functions: the allow-list of strict mode ([`Router::strict_functions`]),
//!   where any other function call goes to the primary.
//!
//! Names are matched case-insensitively on the last component (`pg_catalog.nextval` is
//! `nextval`).
//!
//! [`Router::strict_functions`]: super::Router::strict_functions

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{Dialect, Reason};

pub(crate) const SEQUENCE: Reason = Reason(&"sequence function");
pub(crate) const ADVISORY: Reason = Reason(&"advisory lock");
pub(crate) const NOTIFY: Reason = Reason(&"notification");
pub(crate) const WRITE_FN: Reason = Reason(&"write or volatile function");
pub(crate) const SESSION_FN: Reason = Reason(&"session-bound function");
pub(crate) const PRIMARY_FN: Reason = Reason(&"primary-only function");

/// The reason a built-in function sends a statement to the primary, if it does.
pub(crate) fn write_reason(dialect: Dialect, name: &str) -> Option<Reason> {
    static POSTGRES: LazyLock<Names<Reason>> = LazyLock::new(|| {
        Names::new([
            (&["nextval", "setval"][..], SEQUENCE),
            (&["currval", "lastval"], SESSION_FN),
            (&["pg_notify"], NOTIFY),
            (PG_PRIMARY_ONLY, PRIMARY_FN),
            (PG_WRITE, WRITE_FN),
        ])
    });
    static MYSQL: LazyLock<Names<Reason>> = LazyLock::new(|| {
        Names::new([
            (
                &[
                    "get_lock",
                    "release_lock",
                    "release_all_locks",
                    "is_used_lock",
                    "is_free_lock",
                ][..],
                ADVISORY,
            ),
            (&["nextval", "setval", "lastval"], SEQUENCE),
            (
                &["last_insert_id", "found_rows", "row_count", "connection_id"],
                SESSION_FN,
            ),
            // Not writes, but they read server files or wait on replication: the primary.
            // (`SLEEP` and `BENCHMARK` only take time, like `pg_sleep`: any node.)
            (
                &["load_file", "master_pos_wait", "source_pos_wait"],
                WRITE_FN,
            ),
        ])
    });
    static SQLITE: LazyLock<Names<Reason>> = LazyLock::new(|| {
        Names::new([(
            &["last_insert_rowid", "changes", "total_changes"][..],
            SESSION_FN,
        )])
    });
    match dialect {
        Dialect::Postgres => POSTGRES.get(name).or_else(|| {
            if starts_with_ignore_case(name, "pg_advisory")
                || starts_with_ignore_case(name, "pg_try_advisory")
            {
                Some(ADVISORY)
            } else if starts_with_ignore_case(name, "pg_stat_reset") {
                Some(WRITE_FN)
            } else {
                None
            }
        }),
        Dialect::MySql => MYSQL.get(name),
        Dialect::Sqlite => SQLITE.get(name),
    }
}

/// A case-insensitive lookup table over the function and keyword lists below.
///
/// The lists stay written for readers (grouped by topic, in source order); at first use each
/// becomes a hash map keyed by the lowercase name. A lookup lowercases the name into a stack
/// buffer and hashes it once. Hand-rolled rather than a `phf` map because the lists are
/// matched case-insensitively and a linear scan of them (`eq_ignore_ascii_case` on every
/// entry, ~70 for PostgreSQL's write functions) was a fifth of the time of classifying a
/// reporting query (`benches/classifier.rs`).
pub(crate) struct Names<T> {
    map: HashMap<Box<[u8]>, T, foldhash::fast::FixedState>,
    /// For each name length, a bit per first byte (`& 31`, case folded) of the names of that
    /// length: most names looked up (`count`, `coalesce`, `AS (`) are in no list, and this
    /// rejects nearly all of them without hashing.
    first_bytes: [u32; BUF + 1],
}

/// The longest name a table may hold.
const BUF: usize = 64;

impl<T: Copy> Names<T> {
    /// Builds the table; a name in several lists keeps the value of the first.
    fn new<'l>(lists: impl IntoIterator<Item = (&'l [&'l str], T)>) -> Self {
        let mut map = HashMap::with_hasher(foldhash::fast::FixedState::default());
        let mut first_bytes = [0u32; BUF + 1];
        for (names, value) in lists {
            for name in names {
                assert!(!name.is_empty() && name.len() <= BUF, "{name:?}");
                first_bytes[name.len()] |= 1 << (name.as_bytes()[0] & 31);
                map.entry(name.to_ascii_lowercase().into_bytes().into_boxed_slice())
                    .or_insert(value);
            }
        }
        Names { map, first_bytes }
    }

    /// The value for `name`, compared case-insensitively.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<T> {
        let b = name.as_bytes();
        match (self.first_bytes.get(b.len()), b.first()) {
            (Some(bits), Some(&c)) if bits & (1 << (c & 31)) != 0 => self.lookup(b),
            _ => None,
        }
    }

    fn lookup(&self, name: &[u8]) -> Option<T> {
        let mut buf = [0u8; BUF];
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.map.get(&*lower).copied()
    }

    /// Whether `name` is in the table.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// PostgreSQL functions that a standby refuses ("recovery is in progress"): they report the
/// primary's own WAL position.
const PG_PRIMARY_ONLY: &[&str] = &[
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_walfile_name",
    "pg_walfile_name_offset",
];

/// PostgreSQL functions that write, change server or session state, or hold resources.
const PG_WRITE: &[&str] = &[
    "txid_current",
    "pg_current_xact_id",
    "set_config",
    "setseed",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_emit_message",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_export_snapshot",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
    "pg_truncate_visibility_map",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_from_bytea",
    "lo_put",
    "lo_open",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
];

/// Words that are followed by `(` without being a function call.
pub(crate) fn is_not_a_call(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "in",
        "exists",
        "values",
        "any",
        "all",
        "some",
        "array",
        "row",
        "over",
        "filter",
        "within",
        "as",
        "on",
        "using",
        "from",
        "join",
        "where",
        "and",
        "or",
        "not",
        "select",
        "when",
        "then",
        "else",
        "case",
        "by",
        "lateral",
        "rollup",
        "cube",
        "grouping",
        "sets",
        "partition",
        "set",
        "is",
        "between",
        "like",
        "ilike",
        "similar",
        "distinct",
        "returning",
        "conflict",
        "do",
        "with",
        "recursive",
        "materialized",
        "if",
        "into",
        "table",
        "only",
        "union",
        "intersect",
        "except",
        "limit",
        "offset",
        "having",
        "window",
        "order",
        "group",
        "tablesample",
        "unnest",
        "for",
        "of",
        "to",
        "by",
        "default",
        "check",
        "key",
        "primary",
        "references",
        "unique",
        "include",
        "asc",
        "desc",
        "escape",
        "at",
        "zone",
        "interval",
        "explain",
        "analyze",
        "verbose",
        "format",
        "copy",
        "stdout",
        "option",
        "options",
        "returns",
        "language",
        "index",
        "inner",
        "left",
        "right",
        "full",
        "outer",
        "cross",
        "natural",
        "collate",
        "match",
        "matched",
        "update",
        "delete",
        "insert",
        "merge",
        "ordinality",
    ];
    static SET: LazyLock<Names<()>> = LazyLock::new(|| Names::new([(KEYWORDS, ())]));
    SET.contains(word)
}

/// Functions strict mode lets through to a replica: read-only built-ins common in
/// application SQL (aggregates, window functions, string, math, date/time, JSON, arrays, full
/// text search, type constructors, catalog lookups).
pub(crate) fn is_read_only_builtin(name: &str) -> bool {
    const READ_ONLY: &[&str] = &[
        // aggregates and window functions
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "bool_and",
        "bool_or",
        "every",
        "bit_and",
        "bit_or",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "percentile_cont",
        "percentile_disc",
        "mode",
        "corr",
        "covar_pop",
        "covar_samp",
        "regr_slope",
        "row_number",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
        "group_concat",
        // conditionals and comparison
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "ifnull",
        "iif",
        "if",
        "isnull",
        // strings
        "lower",
        "upper",
        "length",
        "char_length",
        "character_length",
        "octet_length",
        "bit_length",
        "substring",
        "substr",
        "trim",
        "ltrim",
        "rtrim",
        "btrim",
        "position",
        "strpos",
        "replace",
        "concat",
        "concat_ws",
        "left",
        "right",
        "lpad",
        "rpad",
        "repeat",
        "reverse",
        "split_part",
        "initcap",
        "format",
        "to_char",
        "to_number",
        "to_hex",
        "md5",
        "sha256",
        "sha512",
        "encode",
        "decode",
        "quote_ident",
        "quote_literal",
        "quote_nullable",
        "regexp_replace",
        "regexp_match",
        "regexp_matches",
        "regexp_split_to_array",
        "regexp_split_to_table",
        "regexp_like",
        "regexp_count",
        "regexp_substr",
        "starts_with",
        "translate",
        "ascii",
        "chr",
        "overlay",
        "instr",
        "locate",
        "char",
        "string_to_array",
        "array_to_string",
        "unaccent",
        "similarity",
        "levenshtein",
        "soundex",
        "difference",
        "hex",
        "unhex",
        "printf",
        "glob",
        // math
        "abs",
        "ceil",
        "ceiling",
        "floor",
        "round",
        "trunc",
        "mod",
        "power",
        "pow",
        "sqrt",
        "cbrt",
        "exp",
        "ln",
        "log",
        "log10",
        "sign",
        "pi",
        "degrees",
        "radians",
        "sin",
        "cos",
        "tan",
        "random",
        "width_bucket",
        "div",
        "gcd",
        "lcm",
        "factorial",
        // date and time
        "now",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
        "clock_timestamp",
        "statement_timestamp",
        "transaction_timestamp",
        "timeofday",
        "date_trunc",
        "date_part",
        "date_bin",
        "extract",
        "age",
        "make_date",
        "make_time",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "to_timestamp",
        "to_date",
        "justify_days",
        "justify_hours",
        "justify_interval",
        "isfinite",
        "date_add",
        "date_sub",
        "datediff",
        "date_format",
        "str_to_date",
        "unix_timestamp",
        "from_unixtime",
        "curdate",
        "curtime",
        "strftime",
        "julianday",
        "unixepoch",
        "datetime",
        "date",
        "time",
        "timestamp",
        // JSON
        "to_json",
        "to_jsonb",
        "row_to_json",
        "array_to_json",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "json_object",
        "jsonb_object",
        "json_array_length",
        "jsonb_array_length",
        "json_each",
        "jsonb_each",
        "json_each_text",
        "jsonb_each_text",
        "json_extract_path",
        "jsonb_extract_path",
        "json_extract_path_text",
        "jsonb_extract_path_text",
        "json_object_keys",
        "jsonb_object_keys",
        "json_array_elements",
        "jsonb_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements_text",
        "json_typeof",
        "jsonb_typeof",
        "jsonb_set",
        "jsonb_insert",
        "jsonb_strip_nulls",
        "jsonb_pretty",
        "jsonb_path_query",
        "jsonb_path_query_array",
        "jsonb_path_query_first",
        "jsonb_path_exists",
        "jsonb_path_match",
        "json_extract",
        "json_unquote",
        "json_contains",
        "json_array",
        "json_valid",
        "json_length",
        "json_keys",
        // arrays and sets
        "array_length",
        "array_upper",
        "array_lower",
        "cardinality",
        "array_position",
        "array_positions",
        "array_append",
        "array_prepend",
        "array_cat",
        "array_remove",
        "array_replace",
        "array_dims",
        "array_ndims",
        "unnest",
        "generate_series",
        "generate_subscripts",
        // full text search
        "to_tsvector",
        "to_tsquery",
        "plainto_tsquery",
        "phraseto_tsquery",
        "websearch_to_tsquery",
        "ts_rank",
        "ts_rank_cd",
        "ts_headline",
        "setweight",
        "tsvector_to_array",
        "match",
        // types, casts and misc
        "cast",
        "convert",
        "gen_random_uuid",
        "uuid_generate_v4",
        "uuid",
        "num_nonnulls",
        "num_nulls",
        "pg_typeof",
        "typeof",
        "current_user",
        "session_user",
        "current_schema",
        "current_database",
        "version",
        "pg_is_in_recovery",
        "pg_last_wal_replay_lsn",
        "pg_last_wal_receive_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_size_pretty",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_database_size",
        "pg_column_size",
        "pg_get_indexdef",
        "pg_get_viewdef",
        "pg_get_constraintdef",
        "pg_get_functiondef",
        "pg_get_expr",
        "pg_get_userbyid",
        "pg_table_is_visible",
        "has_table_privilege",
        "has_schema_privilege",
        "has_column_privilege",
        "obj_description",
        "col_description",
        "format_type",
        "inet_server_port",
        "inet_server_addr",
        "inet_client_addr",
        "pg_backend_pid",
        "pg_postmaster_start_time",
        "pg_sleep",
        "pg_wal_lsn_diff",
        "txid_snapshot_xmin",
        "numeric",
        "decimal",
        "varchar",
        "character",
        "bit",
        "varbit",
        "float",
        "double",
        "real",
        "int",
        "integer",
        "bigint",
        "smallint",
        "boolean",
        "bool",
        "text",
        "bytea",
        "timestamptz",
        "timetz",
        "point",
        "box",
        "circle",
        "polygon",
        "inet",
        "cidr",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "lower_inc",
        "upper_inc",
        "isempty",
        "host",
        "masklen",
        "network",
        "st_distance",
        "st_dwithin",
        "quote",
        "nvl",
        "decode",
    ];
    static SET: LazyLock<Names<()>> = LazyLock::new(|| Names::new([(READ_ONLY, ())]));
    SET.contains(name)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}
