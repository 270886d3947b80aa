//! OpenTelemetry's database semantic conventions: the attribute names partypool's spans and
//! metrics carry, and the values it derives from a node's URL and a statement's SQL.
//!
//! partypool emits through `tracing` and `metrics`; the OpenTelemetry bridges
//! (`tracing-opentelemetry`, a `metrics` recorder exporting to OTLP) carry these names
//! through unchanged. See the README's "Observability" for the whole list.

/// A node's connection attributes (`db.system.name`, `db.namespace`, `server.address`,
/// `server.port`), from its redacted URL: never a password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeAttributes {
    /// `postgresql`, `mysql`, `sqlite`.
    pub(crate) system: &'static str,
    /// The database name (SQLite: the file).
    pub(crate) namespace: Option<String>,
    /// The host, without brackets; `None` for SQLite.
    pub(crate) address: Option<String>,
    /// The port (the backend's default when the URL names none); `None` for SQLite.
    pub(crate) port: Option<u16>,
}

impl NodeAttributes {
    /// From a node's URL (`redacted`: its password already replaced).
    pub(crate) fn from_url(redacted: &str, system: &'static str, default_port: u16) -> Self {
        let mut attrs = NodeAttributes {
            system,
            ..NodeAttributes::default()
        };
        let Ok(url) = url::Url::parse(redacted) else {
            return attrs;
        };
        let path = url.path().trim_start_matches('/');
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        if system == "sqlite" {
            // `sqlite://data/app.db`: the host is the path's first segment.
            let file = match url.host_str() {
                Some(host) if !host.is_empty() => format!("{host}/{decoded}"),
                _ => decoded.into_owned(),
            };
            attrs.namespace = Some(file.trim_end_matches('/').to_owned()).filter(|f| !f.is_empty());
            return attrs;
        }
        attrs.namespace = Some(decoded.into_owned()).filter(|d| !d.is_empty());
        attrs.address = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty());
        attrs.port = attrs
            .address
            .as_ref()
            .map(|_| url.port().unwrap_or(default_port));
        attrs
    }
}

/// `db.operation.name`: the statement's first keyword, upper case (`SELECT`, `INSERT`,
/// `WITH`…), after leading blanks and comments; `None` when there is none.
///
/// Hand-written: it runs for every statement while a span is recorded, and the router's
/// scanner classifies rather than names.
pub(crate) fn operation_name(sql: &str) -> Option<String> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_ascii_uppercase())
}

/// `error.type` for a failed call: the SQLSTATE (or server error code) when the database
/// answered, else the kind of failure.
pub(crate) fn error_type(e: &sqlx::Error) -> String {
    if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
        return code.into_owned();
    }
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut => "timeout".into(),
            _ => "io".into(),
        },
        sqlx::Error::PoolTimedOut => "pool_timed_out".into(),
        sqlx::Error::PoolClosed => "pool_closed".into(),
        sqlx::Error::Tls(_) => "tls".into(),
        sqlx::Error::Protocol(_) => "protocol".into(),
        sqlx::Error::RowNotFound => "row_not_found".into(),
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names() {
        let cases = [
            ("SELECT 1", Some("SELECT")),
            ("  select * from t", Some("SELECT")),
            (
                "/* partypool:primary */ insert into t values (1)",
                Some("INSERT"),
            ),
            (
                "-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x",
                Some("WITH"),
            ),
            ("(SELECT 1)", None),
            ("", None),
            ("/* unterminated", None),
        ];
        for (sql, want) in cases {
            assert_eq!(operation_name(sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn node_attributes_come_from_the_url_without_secrets() {
        let a = NodeAttributes::from_url(
            "postgres://app:***@db-1.internal:6432/billing?sslmode=require",
            "postgresql",
            5432,
        );
        assert_eq!(a.namespace.as_deref(), Some("billing"));
        assert_eq!(a.address.as_deref(), Some("db-1.internal"));
        assert_eq!(a.port, Some(6432));
        let a = NodeAttributes::from_url("mysql://app@[::1]/shop", "mysql", 3306);
        assert_eq!((a.address.as_deref(), a.port), (Some("::1"), Some(3306)));
        let a = NodeAttributes::from_url("sqlite://data/app.db?mode=rwc", "sqlite", 0);
        assert_eq!(a.namespace.as_deref(), Some("data/app.db"));
        assert_eq!((a.address, a.port), (None, None));
        let a = NodeAttributes::from_url("sqlite:///tmp/x/app.db", "sqlite", 0);
        assert_eq!(a.namespace.as_deref(), Some("tmp/x/app.db"));
    }

    #[test]
    fn error_types() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(error_type(&io), "io");
        assert_eq!(error_type(&sqlx::Error::PoolTimedOut), "pool_timed_out");
    }
}
