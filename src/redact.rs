//! Keeping passwords out of everything partypool prints.
//!
//! Every URL is redacted once, when a node is created, and only the redacted form is stored
//! for display. Text that comes from elsewhere (a driver's error message) is scrubbed of the
//! node's password before it is shown, as a second line of defence.

/// The placeholder shown instead of a password.
pub(crate) const MASK: &str = "***";

/// A URL (or libpq-style `key=value` string) with its password replaced by `***`.
///
/// Works on malformed input too: it never echoes what looks like a password.
pub(crate) fn redact_url(raw: &str) -> String {
    if let Ok(mut url) = url::Url::parse(raw) {
        if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
            return redact_text(raw);
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = is_secret_key(&k);
                (
                    k.into_owned(),
                    if secret {
                        MASK.to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        if pairs.iter().any(|(k, _)| is_secret_key(k)) {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return url.to_string();
    }
    redact_text(raw)
}

/// The password part of a URL, if it has one (percent-decoded).
pub(crate) fn password_of(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let userinfo = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let query = url
        .query_pairs()
        .find(|(k, _)| is_secret_key(k))
        .map(|(_, v)| v.into_owned());
    userinfo.or(query).filter(|p| !p.is_empty())
}

/// Replaces every occurrence of `secret` in `text` with `***`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, MASK),
        _ => text.to_owned(),
    }
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "password" || k == "pass" || k == "passwd" || k == "sslpassword"
}

/// Redaction for text that is not a parseable URL: masks the userinfo password of anything
/// shaped like `scheme://user:pass@host` and every `password=value` pair.
fn redact_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    // user:pass@ after a scheme. The password may hold `/`, `?` or `@` (unencoded), so the
    // userinfo ends at the *last* `@` anywhere: masking too much is fine, too little is not.
    if let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        if let Some(at) = tail.rfind('@') {
            let userinfo = &tail[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            rest = &tail[at..];
        } else {
            rest = tail;
        }
    }
    // key=value pairs (libpq style or query strings).
    let mut chars = rest;
    while !chars.is_empty() {
        let lower = chars.to_ascii_lowercase();
        let hit = ["password=", "pass=", "passwd=", "sslpassword="]
            .iter()
            .filter_map(|k| lower.find(k).map(|i| (i, k.len())))
            .min();
        match hit {
            Some((i, len)) => {
                out.push_str(&chars[..i + len]);
                out.push_str(MASK);
                let after = &chars[i + len..];
                // A quoted value ('…' or "…") runs to its closing quote, spaces included.
                let end = match after.chars().next() {
                    Some(q @ ('\'' | '"')) => after[1..].find(q).map_or(after.len(), |e| e + 2),
                    _ => after.find([' ', '&', ';']).unwrap_or(after.len()),
                };
                chars = &after[end..];
            }
            None => {
                out.push_str(chars);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        let r = redact_url("postgres://db/app?user=a&password=s3cret&sslmode=require");
        assert!(
            !r.contains("s3cret") && r.contains("sslmode=require"),
            "{r}"
        );
        assert_eq!(
            redact_url("sqlite://./a.db?mode=ro"),
            "sqlite://./a.db?mode=ro"
        );
    }

    #[test]
    fn malformed_input_never_echoes_the_password() {
        for raw in [
            "postgres://app:s3cret@db:notaport/app",
            "postgres://app:s3cret@[bad/app",
            "host=db user=app password=s3cret dbname=x",
            "://app:s3cret@",
            "postgres://app:ab/s3cret@db/app",
            "postgres://app:s3cret?x@db/app",
            "postgres://app:s3c@ret@db:5432/app",
            "host=db password='s3cret and more' user=app",
            "host=db password=\"s3cret x\" user=app",
        ] {
            let r = redact_url(raw);
            assert!(!r.contains("s3cret"), "{raw} -> {r}");
        }
    }

    #[test]
    fn password_extraction_and_scrub() {
        assert_eq!(
            password_of("postgres://a:p%40ss@h/d").as_deref(),
            Some("p@ss")
        );
        assert_eq!(
            password_of("postgres://a@h/d?password=x").as_deref(),
            Some("x")
        );
        assert_eq!(password_of("postgres://a@h/d"), None);
        assert_eq!(
            scrub("auth failed for p@ss", Some("p@ss")),
            "auth failed for ***"
        );
    }
}
