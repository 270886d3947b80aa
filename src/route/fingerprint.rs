//! A statement's fingerprint for logs: its shape without literal values.
//!
//! Strings and numbers become `?`, whitespace and comments collapse, and the result is cut to
//! a readable length and followed by a hash of the whole shape, so two log lines about the
//! same statement can be matched even when it is long. Literal values never appear.

use std::fmt::Write;
use std::hash::Hasher;

use super::Dialect;
use super::scan::{Scanner, Token};

const MAX_SHOWN: usize = 80;

/// `SELECT bump ( ? ) FROM t WHERE id = ? [1f3a…]`.
pub(crate) fn fingerprint(dialect: Dialect, sql: &str) -> String {
    let mut shape = String::with_capacity(sql.len().min(256));
    for tok in Scanner::new(sql, dialect) {
        if !shape.is_empty() {
            shape.push(' ');
        }
        match tok {
            Token::Word(w) => shape.push_str(w),
            Token::QuotedIdent(q) => {
                let _ = write!(shape, "\"{q}\"");
            }
            Token::Str | Token::Literal => shape.push('?'),
            Token::Semicolon => shape.push(';'),
            Token::Open => shape.push('('),
            Token::Close => shape.push(')'),
            Token::Dot => shape.push('.'),
            Token::Punct(c) => shape.push(char::from(c)),
            Token::Invalid => shape.push('…'),
        }
    }
    // FNV-1a: stable across runs and platforms (std's default hasher is randomly seeded).
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    hash.write(shape.as_bytes());
    let mut shown: String = shape.chars().take(MAX_SHOWN).collect();
    if shown.len() < shape.len() {
        shown.push('…');
    }
    format!("{shown} [{:016x}]", hash.finish())
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_literals_and_matches_shapes() {
        let a = fingerprint(Dialect::Postgres, "SELECT bump('secret-value', 42) -- note");
        let b = fingerprint(Dialect::Postgres, "select  bump('other', 7)");
        let shape = a.split(" [").next().unwrap();
        assert!(!shape.contains("secret") && !shape.contains("42"), "{a}");
        assert!(a.starts_with("SELECT bump ( ? , ? ) ["), "{a}");
        // Same shape up to case: the hash differs only because of case.
        assert_ne!(a, b);
        assert_eq!(a, fingerprint(Dialect::Postgres, "SELECT bump('x', 1)"));
        let long = format!("SELECT {} FROM t", vec!["a"; 200].join(", "));
        assert!(fingerprint(Dialect::Postgres, &long).chars().count() < 110);
    }
}
