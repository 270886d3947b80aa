//! How a request's token travels: read from a header or a cookie, checked (and, with a secret,
//! verified), written back when the request changed it. One implementation behind the tower
//! layer and the actix-web middleware, which only adapt their frameworks' types to it.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Backend, CausalToken, ReplicaPool, Session};

/// The default header: `x-partypool-token`.
pub const DEFAULT_HEADER: &str = "x-partypool-token";
/// The default cookie: `partypool_token`.
pub const DEFAULT_COOKIE: &str = "partypool_token";

/// The `SameSite` attribute of the token cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    #[default]
    Lax,
    /// Sent on every request (browsers then require `Secure`).
    None,
}

/// Where tokens are read and written, and the key that signs them.
#[derive(Clone)]
pub(crate) struct Carrier {
    /// Lower case.
    pub(crate) header: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    secret: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("header", &self.header)
            .field("cookie", &self.cookie)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Carrier {
    fn default() -> Self {
        Carrier {
            header: Some(DEFAULT_HEADER.to_owned()),
            cookie: Some(DEFAULT_COOKIE.to_owned()),
            secure: false,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            secret: None,
        }
    }
}

/// What to add to the response.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// The header's new value.
    pub(crate) header: Option<String>,
    /// A `Set-Cookie` value.
    pub(crate) set_cookie: Option<String>,
}

/// A request's session, and what came with the request.
pub(crate) struct Opened<DB: Backend> {
    pub(crate) session: Session<DB>,
    sent: Option<String>,
    rejected: bool,
}

type Signer = Hmac<Sha256>;
/// Bytes of the HMAC-SHA256 tag kept in a token (128 bits).
const TAG: usize = 16;

impl Carrier {
    /// # Panics
    ///
    /// If `name` is not a valid cookie name (empty, or with separators, spaces or `=`).
    pub(crate) fn set_cookie_name(&mut self, name: String) {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        assert!(valid, "invalid cookie name {name:?}");
        self.cookie = Some(name);
    }

    /// # Panics
    ///
    /// If `path` is not visible ASCII without `;`.
    pub(crate) fn set_path(&mut self, path: String) {
        assert!(
            path.bytes().all(|b| b.is_ascii_graphic() && b != b';'),
            "invalid cookie path {path:?}"
        );
        self.path = path;
    }

    /// # Panics
    ///
    /// If `secret` is shorter than 16 bytes.
    pub(crate) fn set_secret(&mut self, secret: &[u8]) {
        assert!(
            secret.len() >= 16,
            "a token secret needs at least 16 bytes (32 random ones recommended)"
        );
        self.secret = Some(secret.into());
    }

    fn tag(&self, text: &str) -> Option<Signer> {
        let mut mac = Signer::new_from_slice(self.secret.as_deref()?).expect("any key length");
        mac.update(text.as_bytes());
        Some(mac)
    }

    /// The token as sent to clients: `text.tag` when signing.
    fn seal(&self, token: &CausalToken) -> String {
        let text = token.to_string();
        match self.tag(&text) {
            Some(mac) => {
                let tag = mac.finalize().into_bytes();
                let hex: String = tag[..TAG].iter().map(|b| format!("{b:02x}")).collect();
                format!("{text}.{hex}")
            }
            None => text,
        }
    }

    /// The token in `sent`, verified when signing (compared in constant time).
    fn unseal(&self, sent: &str) -> Result<CausalToken, String> {
        let text = match &self.secret {
            None => sent,
            Some(_) => {
                let (text, hex) = sent
                    .rsplit_once('.')
                    .ok_or("the token is not signed (this server signs its tokens)")?;
                let tag: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect::<Option<_>>()
                    .filter(|t: &Vec<u8>| t.len() == TAG)
                    .ok_or("the token's signature is malformed")?;
                self.tag(text)
                    .expect("signing")
                    .verify_truncated_left(&tag)
                    .map_err(|_| "the token's signature does not match (forged, or another key)")?;
                text
            }
        };
        text.parse().map_err(|e: crate::Error| e.to_string())
    }

    /// The token the client sent: the header first, then the cookie. Cookies are compared
    /// as bytes: another cookie of the site with a non-ASCII value must not hide ours.
    pub(crate) fn incoming<'a>(
        &self,
        header: Option<&'a [u8]>,
        cookies: impl Iterator<Item = &'a [u8]>,
    ) -> Option<String> {
        if let Some(value) = header {
            let text = String::from_utf8_lossy(value).trim().to_owned();
            if !text.is_empty() {
                return Some(text);
            }
        }
        let cookie = self.cookie.as_deref()?.as_bytes();
        cookies
            .flat_map(|v| v.split(|&b| b == b';'))
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
            })
            .find(|(name, _)| *name == cookie)
            .map(|(_, value)| {
                let value = value.strip_prefix(b"\"").unwrap_or(value);
                let value = value.strip_suffix(b"\"").unwrap_or(value);
                String::from_utf8_lossy(value).into_owned()
            })
    }

    /// The request's session: continued from the token it sent, else new. A token that
    /// cannot be used (garbled, unsigned or badly signed where tokens are signed, from
    /// another cluster, of the wrong kind) is ignored with a warning.
    pub(crate) fn open<DB: Backend>(
        &self,
        pool: &ReplicaPool<DB>,
        sent: Option<String>,
    ) -> Opened<DB> {
        let mut rejected = false;
        let session = match &sent {
            Some(text) => match self.unseal(text).and_then(|t| {
                // A verified signature makes it ours; unsigned, its cost is bounded.
                let trusted = self.secret.is_some();
                pool.session_from(t, trusted).map_err(|e| e.to_string())
            }) {
                Ok(session) => session,
                Err(reason) => {
                    tracing::warn!(%reason, "ignoring the request's partypool token: reading as a fresh session");
                    rejected = true;
                    pool.session()
                }
            },
            None => pool.session(),
        };
        Opened {
            session,
            sent,
            rejected,
        }
    }

    /// What the response carries: the session's new token when the request changed it (it
    /// wrote, or its token had to be replaced); a read-only request leaves the client's
    /// token alone, and an unusable one that nothing replaced is cleared.
    pub(crate) async fn close<DB: Backend>(&self, opened: Opened<DB>) -> Outgoing {
        let Opened {
            session,
            sent,
            rejected,
        } = opened;
        let unchanged = session.token().map(|t| self.seal(&t)) == sent;
        if unchanged && !session.state.has_transactions() {
            return Outgoing::default();
        }
        match session.settled_token().await {
            Some(token) => {
                let text = self.seal(&token);
                if Some(&text) == sent.as_ref() {
                    return Outgoing::default();
                }
                Outgoing {
                    header: self.header.as_ref().map(|_| text.clone()),
                    set_cookie: self.cookie.as_ref().map(|c| self.cookie_value(c, &text)),
                }
            }
            None if rejected => Outgoing {
                header: None,
                set_cookie: self
                    .cookie
                    .as_ref()
                    .map(|c| format!("{c}=; Path={}; Max-Age=0; HttpOnly", self.path)),
            },
            None => Outgoing::default(),
        }
    }

    fn cookie_value(&self, cookie: &str, text: &str) -> String {
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{cookie}={text}; Path={}; HttpOnly; SameSite={same_site}{secure}",
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> CausalToken {
        "pp2-l-6f1a2b3c4d5e6f70-1-3000148".parse().unwrap()
    }

    #[test]
    fn signed_tokens_verify_and_forgeries_do_not() {
        let mut c = Carrier::default();
        c.set_secret(b"0123456789abcdef0123456789abcdef");
        let t = token();
        let sealed = c.seal(&t);
        assert_eq!(c.unseal(&sealed).unwrap().to_string(), t.to_string());
        // Unsigned, tampered, truncated, another key: all refused.
        assert!(c.unseal(&t.to_string()).is_err());
        let tampered = sealed.replacen("3000148", "3000149", 1);
        assert!(c.unseal(&tampered).is_err());
        assert!(c.unseal(&sealed[..sealed.len() - 2]).is_err());
        let mut other = Carrier::default();
        other.set_secret(b"another key, sixteen bytes or more");
        assert!(other.unseal(&sealed).is_err());
        // Without a secret, tokens are plain.
        assert_eq!(Carrier::default().seal(&t), t.to_string());
    }
}
