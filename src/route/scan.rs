//! A dialect-aware SQL token scanner.
//!
//! The scanner knows just enough lexical structure to never mistake the inside of a string,
//! a quoted identifier or a comment for code: `--` and `/* */` comments (nested in
//! PostgreSQL), `'…'` with `''`, `E'…'` with backslash escapes, `$tag$…$tag$` dollar quotes,
//! `"…"` identifiers, and for MySQL/MariaDB backticks, `#` comments and backslash escapes in
//! strings. It works on bytes, runs in linear time, never allocates and never panics: input
//! it cannot make sense of (an unterminated quote or comment) becomes a [`Token::Invalid`].
//!
//! It is hand-written rather than taken from `sqlparser` because routing needs only the
//! lexical layer, must accept every statement a server accepts (a full parser rejects what it
//! does not know and would send it to the primary), and runs on every query: the benchmark
//! in `benches/` compares the two.

use super::{Dialect, Target};

/// One lexical token. Words keep their original case; compare with
/// [`eq_ignore_ascii_case`](str::eq_ignore_ascii_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// An unquoted identifier or keyword.
    Word(&'a str),
    /// A quoted identifier (`"x"`, or `` `x` `` in MySQL), as the text between the quotes
    /// (doubled quotes stay doubled).
    QuotedIdent(&'a str),
    /// A string literal of any kind (including dollar-quoted bodies).
    Str,
    /// A number or a positional parameter (`$1`, `?`).
    Literal,
    /// `;` outside any quote or comment.
    Semicolon,
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// `.`.
    Dot,
    /// Any other punctuation or operator character.
    Punct(u8),
    /// Input the scanner cannot make sense of: an unterminated quote or comment (an
    /// executable MySQL comment too), or an executable comment inside another.
    Invalid,
}

/// Byte classes, looked up in one table instead of a chain of range tests: the scanner's
/// inner loops (whitespace, words) run once per input byte, and the table halves the time of
/// the whole classifier on short statements (`benches/classifier.rs`).
const WHITESPACE: u8 = 1;
/// May start a word: ASCII letters, `_`, and every non-ASCII byte (PostgreSQL treats bytes
/// ≥ 0x80 as identifier characters).
const WORD_START: u8 = 2;
/// May continue a word: the above plus digits (`$` is handled per dialect).
const WORD: u8 = 4;
/// `$`: continues a word in PostgreSQL and MySQL, not in SQLite.
const DOLLAR: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_whitespace() || c == 0x0b {
            t[i] = WHITESPACE;
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            t[i] = WORD_START | WORD;
        } else if c.is_ascii_digit() {
            t[i] = WORD;
        } else if c == b'$' {
            t[i] = DOLLAR;
        }
        i += 1;
    }
    t
};

/// Iterator over the tokens of a SQL text. Whitespace and comments are skipped.
pub(crate) struct Scanner<'a> {
    src: &'a str,
    pos: usize,
    dialect: Dialect,
    /// The classes that continue a word in this dialect.
    word_mask: u8,
    done: bool,
    /// No token has been returned yet: comments seen now are "leading" and may carry hints.
    leading: bool,
    hint: Option<Target>,
    /// Inside a MySQL `/*! … */` or MariaDB `/*M! … */` executable comment: its content is
    /// code (scanned as tokens), and its `*/` is skipped.
    in_executable: bool,
    /// Read version-gated executable comments as comments (see [`skipping_gated`]).
    ///
    /// [`skipping_gated`]: Scanner::skipping_gated
    skip_gated: bool,
    /// A version-gated executable comment was seen.
    saw_gated: bool,
}

/// The routing hints partypool reads in leading comments.
const HINT_PRIMARY: &[u8] = b"partypool:primary";
const HINT_REPLICA: &[u8] = b"partypool:replica";

impl<'a> Scanner<'a> {
    pub(crate) fn new(src: &'a str, dialect: Dialect) -> Self {
        Scanner {
            src,
            pos: 0,
            dialect,
            word_mask: if dialect == Dialect::Sqlite {
                WORD
            } else {
                WORD | DOLLAR
            },
            done: false,
            leading: true,
            hint: None,
            in_executable: false,
            skip_gated: false,
            saw_gated: false,
        }
    }

    /// With `skip`, a version-gated executable comment (`/*!50700 … */`, or MariaDB's
    /// `/*M! … */`, which MySQL skips) is read as a comment: as a server that skips it
    /// reads it, up to the first `*/`, quotes and all. Without, as code (a server that runs
    /// it). The router routes to a replica only when both readings agree.
    pub(crate) fn skipping_gated(mut self, skip: bool) -> Self {
        self.skip_gated = skip;
        self
    }

    /// Whether a version-gated executable comment was seen.
    pub(crate) fn saw_gated(&self) -> bool {
        self.saw_gated
    }

    /// A `partypool:primary` or `partypool:replica` hint found in the comments before the
    /// first token (`primary` wins if both appear).
    pub(crate) fn hint(&self) -> Option<Target> {
        self.hint
    }

    /// Records a hint if the comment `self.src[start..self.pos]` is a leading one with a hint.
    fn note_comment(&mut self, start: usize) {
        if !self.leading || self.hint == Some(Target::Primary) {
            return;
        }
        let text = &self.bytes()[start..self.pos];
        if memchr::memmem::find(text, HINT_PRIMARY).is_some() {
            self.hint = Some(Target::Primary);
        } else if memchr::memmem::find(text, HINT_REPLICA).is_some() {
            self.hint = Some(Target::Replica);
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.bytes().get(self.pos + off).copied()
    }

    /// Skips whitespace and comments. Returns `false` on an unterminated block comment or an
    /// executable comment inside another.
    ///
    /// An executable comment (`/*! … */`, `/*!50001 … */`, MariaDB's `/*M!100100 … */`) is
    /// code to the server: its marker and version are skipped and its content scanned as
    /// tokens, as if the comment were not there. A version-gated one the server would skip
    /// is scanned too: a lock or write in it goes to the primary either way.
    #[inline]
    fn skip_trivia(&mut self) -> bool {
        let b = self.bytes();
        loop {
            // ASCII whitespace plus vertical tab, which PostgreSQL's scanner also skips.
            let mut i = self.pos;
            while i < b.len() && CLASS[b[i] as usize] & WHITESPACE != 0 {
                i += 1;
            }
            self.pos = i;
            // Fast path: most tokens do not start a comment.
            // (`*` only matters inside an executable comment, checked below.)
            if !matches!(b.get(i), Some(b'-' | b'/' | b'#' | b'*')) {
                return true;
            }
            let start = self.pos;
            match (self.peek(0), self.peek(1)) {
                // In MySQL `--` starts a comment only before whitespace (`1--1` is arithmetic).
                (Some(b'-'), Some(b'-'))
                    if self.dialect != Dialect::MySql
                        || self
                            .peek(2)
                            .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
                {
                    self.skip_line()
                }
                (Some(b'#'), _) if self.dialect == Dialect::MySql => self.skip_line(),
                // The end of an executable comment.
                (Some(b'*'), Some(b'/')) if self.in_executable => {
                    self.pos += 2;
                    self.in_executable = false;
                    continue;
                }
                (Some(b'/'), Some(b'*')) => {
                    // Executable comments run as code: MySQL's `/*! … */`, MariaDB's
                    // `/*M! … */`.
                    let executable = self.peek(2) == Some(b'!')
                        || (self.peek(2) == Some(b'M') && self.peek(3) == Some(b'!'));
                    if self.dialect == Dialect::MySql && executable {
                        if self.in_executable {
                            return false;
                        }
                        let mariadb = self.peek(2) == Some(b'M');
                        let marker = if mariadb { 4 } else { 3 };
                        let gated =
                            mariadb || self.peek(marker).is_some_and(|d| d.is_ascii_digit());
                        self.saw_gated |= gated;
                        if !(gated && self.skip_gated) {
                            self.pos += marker;
                            while self.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                                self.pos += 1;
                            }
                            self.in_executable = true;
                            continue;
                        }
                    }
                    if !self.skip_block_comment() {
                        return false;
                    }
                }
                _ => return true,
            }
            self.note_comment(start);
        }
    }

    /// Skips to the end of the line: `\n` or `\r`, as PostgreSQL's scanner does.
    fn skip_line(&mut self) {
        let b = self.bytes();
        self.pos = memchr::memchr2(b'\n', b'\r', &b[self.pos..]).map_or(b.len(), |i| self.pos + i);
    }

    /// Skips a `/* … */` comment starting at `pos`; nested comments count in PostgreSQL.
    fn skip_block_comment(&mut self) -> bool {
        let b = self.bytes();
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        while self.pos + 1 < b.len() {
            match (b[self.pos], b[self.pos + 1]) {
                (b'/', b'*') if depth == 0 || nests => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return true;
                    }
                }
                _ => self.pos += 1,
            }
        }
        self.pos = b.len();
        false
    }

    /// Skips a quoted run opened by `quote` at `pos`. A doubled quote is an escaped quote;
    /// with `backslash`, a backslash escapes the next byte.
    fn skip_quoted(&mut self, quote: u8, backslash: bool) -> bool {
        let b = self.bytes();
        self.pos += 1;
        while self.pos < b.len() {
            let c = b[self.pos];
            if backslash && c == b'\\' {
                self.pos += 2;
            } else if c == quote {
                if b.get(self.pos + 1) == Some(&quote) {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    return true;
                }
            } else {
                self.pos += 1;
            }
        }
        self.pos = b.len();
        false
    }

    /// At a `$`: a dollar-quoted string (`$$…$$`, `$tag$…$tag$`), a parameter (`$1`), or
    /// punctuation.
    fn dollar(&mut self) -> Token<'a> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start + 1;
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            self.pos = i;
            return Token::Literal;
        }
        if self.dialect != Dialect::Postgres {
            self.pos += 1;
            return Token::Punct(b'$');
        }
        while b.get(i).is_some_and(|&c| CLASS[c as usize] & WORD != 0) {
            i += 1;
        }
        if b.get(i) != Some(&b'$') {
            self.pos += 1;
            return Token::Punct(b'$');
        }
        let tag = &b[start..=i];
        let body = i + 1;
        match memchr::memmem::find(&b[body..], tag) {
            Some(end) => {
                self.pos = body + end + tag.len();
                Token::Str
            }
            None => {
                self.pos = b.len();
                Token::Invalid
            }
        }
    }

    #[inline]
    fn word(&mut self) -> Token<'a> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start + 1;
        while i < b.len() && CLASS[b[i] as usize] & self.word_mask != 0 {
            i += 1;
        }
        self.pos = i;
        if i == start + 1 {
            return self.one_letter(start);
        }
        // `i` stops at an ASCII byte or the end, so it is a char boundary.
        Token::Word(&self.src[start..i])
    }

    /// A one-letter word: maybe a string prefix or a Unicode-escaped identifier.
    #[cold]
    fn one_letter(&mut self, start: usize) -> Token<'a> {
        let b = self.bytes();
        let letter = b[start];
        // U&"…": an identifier with Unicode escapes (`U&"\006Eextval"` is `nextval`), which
        // this scanner does not decode: give up rather than guess.
        if letter.eq_ignore_ascii_case(&b'u')
            && self.peek(0) == Some(b'&')
            && self.peek(1) == Some(b'"')
        {
            self.pos = b.len();
            return Token::Invalid;
        }
        // A one-letter prefix glued to a quote is a string: E'…' (PostgreSQL escape string,
        // backslashes escape), B'…', X'…', N'…'.
        if self.peek(0) == Some(b'\'') {
            let escapes = self.dialect == Dialect::MySql
                || (self.dialect == Dialect::Postgres && letter.eq_ignore_ascii_case(&b'e'));
            return self.string(escapes);
        }
        Token::Word(&self.src[start..self.pos])
    }

    fn string(&mut self, backslash: bool) -> Token<'a> {
        if self.skip_quoted(b'\'', backslash) {
            Token::Str
        } else {
            Token::Invalid
        }
    }

    fn number(&mut self) -> Token<'a> {
        let b = self.bytes();
        while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'.') {
            self.pos += 1;
        }
        Token::Literal
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Token<'a>;

    #[inline]
    fn next(&mut self) -> Option<Token<'a>> {
        if self.done {
            return None;
        }
        if !self.skip_trivia() {
            self.done = true;
            return Some(Token::Invalid);
        }
        let Some(c) = self.peek(0) else {
            // An executable comment never closed.
            self.done = true;
            return self.in_executable.then_some(Token::Invalid);
        };
        // Words first, with a direct branch: most tokens are words, and the jump table of
        // the `match` below mispredicts on alternating token kinds.
        let tok = if CLASS[c as usize] & WORD_START != 0 {
            self.word()
        } else {
            self.punctuation(c)
        };
        if tok == Token::Invalid {
            self.done = true;
        }
        self.leading = false;
        Some(tok)
    }
}

impl<'a> Scanner<'a> {
    /// A token that does not start with a letter.
    fn punctuation(&mut self, c: u8) -> Token<'a> {
        match c {
            b';' => {
                self.pos += 1;
                Token::Semicolon
            }
            b'(' => {
                self.pos += 1;
                Token::Open
            }
            b')' => {
                self.pos += 1;
                Token::Close
            }
            b'.' if !self.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                self.pos += 1;
                Token::Dot
            }
            b'\'' => self.string(self.dialect == Dialect::MySql),
            b'"' => {
                let mysql = self.dialect == Dialect::MySql;
                let start = self.pos;
                match (self.skip_quoted(b'"', mysql), mysql) {
                    (false, _) => Token::Invalid,
                    (true, true) => Token::Str,
                    (true, false) => Token::QuotedIdent(&self.src[start + 1..self.pos - 1]),
                }
            }
            b'`' if self.dialect != Dialect::Postgres => {
                let start = self.pos;
                if self.skip_quoted(b'`', false) {
                    Token::QuotedIdent(&self.src[start + 1..self.pos - 1])
                } else {
                    Token::Invalid
                }
            }
            b'[' if self.dialect == Dialect::Sqlite => {
                let b = self.bytes();
                match memchr::memchr(b']', &b[self.pos..]) {
                    Some(end) => {
                        let name = &self.src[self.pos + 1..self.pos + end];
                        self.pos += end + 1;
                        Token::QuotedIdent(name)
                    }
                    None => {
                        self.pos = b.len();
                        Token::Invalid
                    }
                }
            }
            b'$' => self.dollar(),
            b'?' => {
                self.pos += 1;
                Token::Literal
            }
            b'0'..=b'9' | b'.' => self.number(),
            c => {
                self.pos += 1;
                Token::Punct(c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(sql: &str, d: Dialect) -> Vec<Token<'_>> {
        Scanner::new(sql, d).collect()
    }

    #[test]
    fn skips_comments_and_strings() {
        let t = toks(
            "/* a /* nested */ ; */ SELECT 'x;''y' -- ; \n , \"a;b\" ; $$ ; $$ $q$ $$ $q$",
            Dialect::Postgres,
        );
        assert_eq!(
            t,
            vec![
                Token::Word("SELECT"),
                Token::Str,
                Token::Punct(b','),
                Token::QuotedIdent("a;b"),
                Token::Semicolon,
                Token::Str,
                Token::Str,
            ]
        );
    }

    #[test]
    fn escape_strings() {
        assert_eq!(
            toks(r"SELECT E'\';' ;", Dialect::Postgres),
            vec![Token::Word("SELECT"), Token::Str, Token::Semicolon]
        );
        // Standard strings: a backslash is an ordinary character.
        assert_eq!(
            toks(r"SELECT '\' ;", Dialect::Postgres),
            vec![Token::Word("SELECT"), Token::Str, Token::Semicolon]
        );
        assert_eq!(
            toks(r"SELECT '\';' ;", Dialect::MySql),
            vec![Token::Word("SELECT"), Token::Str, Token::Semicolon]
        );
    }

    #[test]
    fn parameters_and_dollar_identifiers() {
        assert_eq!(
            toks("a$b $1 ?", Dialect::Postgres),
            vec![Token::Word("a$b"), Token::Literal, Token::Literal]
        );
    }

    #[test]
    fn unterminated_is_invalid() {
        for sql in [
            "SELECT 'abc",
            "SELECT \"abc",
            "SELECT /* abc",
            "SELECT $$ abc",
            "/* /* */",
        ] {
            assert_eq!(
                toks(sql, Dialect::Postgres).last(),
                Some(&Token::Invalid),
                "{sql}"
            );
        }
        // In MySQL block comments do not nest.
        assert_eq!(
            toks("/* /* */ SELECT", Dialect::MySql),
            vec![Token::Word("SELECT")]
        );
        // Executable comments are code.
        assert_eq!(
            toks("/*!40101 SET x=1 */", Dialect::MySql),
            toks("SET x=1", Dialect::MySql)
        );
        assert_eq!(
            toks("SELECT 1 /*M!100100 FOR UPDATE */;", Dialect::MySql),
            toks("SELECT 1 FOR UPDATE;", Dialect::MySql)
        );
        assert_eq!(
            toks("SELECT /*!STRAIGHT_JOIN*/ 1 /* c */", Dialect::MySql),
            toks("SELECT STRAIGHT_JOIN 1", Dialect::MySql)
        );
        assert_eq!(
            toks("SELECT '*/' /*! , 2 */", Dialect::MySql),
            vec![
                Token::Word("SELECT"),
                Token::Str,
                Token::Punct(b','),
                Token::Literal
            ]
        );
        for bad in [
            "SELECT /*! 1",
            "/*! /*! 1 */ */",
            "SELECT /*M!100100 FOR UPDATE",
        ] {
            assert_eq!(
                toks(bad, Dialect::MySql).last(),
                Some(&Token::Invalid),
                "{bad}"
            );
        }
        // Not in PostgreSQL: an ordinary comment.
        assert_eq!(
            toks("SELECT /*! 1 */", Dialect::Postgres),
            vec![Token::Word("SELECT")]
        );
    }

    #[test]
    fn mysql_comments_and_backticks() {
        assert_eq!(
            toks("# c ;\nSELECT `a;b` FROM t", Dialect::MySql),
            vec![
                Token::Word("SELECT"),
                Token::QuotedIdent("a;b"),
                Token::Word("FROM"),
                Token::Word("t")
            ]
        );
    }

    #[test]
    fn hints_only_in_leading_comments() {
        let hint = |sql: &str| {
            let mut s = Scanner::new(sql, Dialect::Postgres);
            s.by_ref().for_each(drop);
            s.hint()
        };
        assert_eq!(
            hint("/* partypool:replica */ SELECT 1"),
            Some(Target::Replica)
        );
        assert_eq!(
            hint("-- partypool:primary\nSELECT 1"),
            Some(Target::Primary)
        );
        assert_eq!(
            hint("/* a */ /* partypool:replica */ /* partypool:primary */ SELECT 1"),
            Some(Target::Primary)
        );
        assert_eq!(hint("SELECT 1 /* partypool:replica */"), None);
        assert_eq!(hint("SELECT '/* partypool:primary */'"), None);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for sql in [
            "$", "$a", "E'", "'\\", "\u{e9}'", "--", "/*", "/", "[", "`", "\"", "1.2.3e",
        ] {
            for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
                let _ = toks(sql, d);
            }
        }
    }
}
