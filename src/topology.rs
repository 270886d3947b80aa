//! Where nodes come from: declared roles, multi-host URLs, and members added at run time.
//!
//! A member is a URL plus what is known of its role up front. Declared roles are hints the
//! probes confirm; a node of unknown role ([`Role::Discovered`]) serves reads while it is in
//! recovery and may take the writes while it is not (one writer at a time, chosen by
//! the election in `cluster::decide`).

use crate::roles::{Origin, Role};

/// One node to build: its URL, its role as far as known, where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) url: String,
    pub(crate) role: Role,
    pub(crate) origin: Origin,
    /// Its name, when the source gives one (DNS: `host/addr:port`).
    pub(crate) name: Option<String>,
    /// Its zone, when the source gives one (`Builder::in_zone`, a Patroni tag); else the
    /// URL's `zone` parameter, if any.
    pub(crate) zone: Option<String>,
}

/// Takes the `zone` parameter out of a node's URL (no database knows it): the URL without
/// it, and its value. `postgres://h/db?zone=eu-1a&sslmode=require` gives
/// `postgres://h/db?sslmode=require` and `eu-1a`.
pub(crate) fn take_zone(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut found = false;
    let mut zone = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("zone", value)) => {
                let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                zone = Some(value.into_owned()).filter(|z| !z.is_empty());
                found = true;
                false
            }
            _ => true,
        })
        .collect();
    if !found {
        return (url.to_owned(), None);
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, zone)
}

/// Splits a libpq-style multi-host URL into one URL per host, each with the same scheme,
/// user, password, path and query: `postgres://u:p@h1:5432,h2,[::1]:5433/db?x=y` gives
/// `postgres://u:p@h1:5432/db?x=y`, `postgres://u:p@h2/db?x=y` and
/// `postgres://u:p@[::1]:5433/db?x=y`. A URL with one host comes back as it is.
pub(crate) fn split_hosts(url: &str) -> Result<Vec<String>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(vec![url.to_owned()]);
    };
    // The authority ends at the first `/`, `?` or `#`; the user info at its last `@`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in hosts.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&hosts[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&hosts[start..]);
    if out.len() == 1 {
        return Ok(vec![url.to_owned()]);
    }
    if let Some(empty) = out.iter().position(|h| h.trim().is_empty()) {
        return Err(format!(
            "host {} of the multi-host list is empty",
            empty + 1
        ));
    }
    Ok(out
        .into_iter()
        .map(|h| format!("{scheme}://{userinfo}{}{tail}", h.trim()))
        .collect())
}

/// The `host:port` a URL points at, for naming a node (`?` where the URL has none).
pub(crate) fn host_port(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => "?".to_owned(),
        },
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_parameter_is_taken_out_of_the_url() {
        let cases = [
            ("postgres://h/db", ("postgres://h/db", None)),
            (
                "postgres://h/db?zone=eu-1a",
                ("postgres://h/db", Some("eu-1a")),
            ),
            (
                "postgres://h/db?sslmode=require&zone=eu%2D1b&application_name=x",
                (
                    "postgres://h/db?sslmode=require&application_name=x",
                    Some("eu-1b"),
                ),
            ),
            ("mysql://h/db?zone=", ("mysql://h/db", None)),
            ("postgres://h/db?zoned=1", ("postgres://h/db?zoned=1", None)),
        ];
        for (url, (want, zone)) in cases {
            let (got, z) = take_zone(url);
            assert_eq!((got.as_str(), z.as_deref()), (want, zone), "{url}");
        }
    }

    #[test]
    fn multi_host_urls_become_one_url_per_host() {
        assert_eq!(
            split_hosts("postgres://u:p%40w@h1:5432,h2,[::1]:5433/db?sslmode=disable").unwrap(),
            [
                "postgres://u:p%40w@h1:5432/db?sslmode=disable",
                "postgres://u:p%40w@h2/db?sslmode=disable",
                "postgres://u:p%40w@[::1]:5433/db?sslmode=disable",
            ]
        );
        assert_eq!(
            split_hosts("mysql://a,b").unwrap(),
            ["mysql://a", "mysql://b"]
        );
        let one = "postgres://u@h/db";
        assert_eq!(split_hosts(one).unwrap(), [one]);
        assert_eq!(
            split_hosts("sqlite://x.db?mode=ro").unwrap(),
            ["sqlite://x.db?mode=ro"]
        );
        assert!(split_hosts("postgres://u@h1,,h2/db").is_err());
        assert!(split_hosts("postgres://u@h1,/db").is_err());
    }

    #[test]
    fn nodes_are_named_by_host_and_port() {
        assert_eq!(
            host_port("postgres://u:p@127.0.0.1:5433/db"),
            "127.0.0.1:5433"
        );
        assert_eq!(host_port("postgres://u@db-1/db"), "db-1");
        assert_eq!(host_port("not a url"), "?");
    }
}
