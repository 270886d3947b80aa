//! [`CausalToken`]: a session's high-water mark as a short string, untrusted input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, TokenKind};
use crate::positions::{At, GtidSet};

/// A session's high-water mark, carried between requests and processes.
///
/// Its string form names the format version, the kind, and the cluster (PostgreSQL's system
/// identifier), all hexadecimal:
///
/// - `pp2-l-<cluster>-<timeline>-<position>`: reads must see this log position on this
///   timeline;
/// - `pp2-p-<cluster>-<unix ms>`: a write whose position is not known yet, issued by then;
///   holders read on the primary until it has settled;
/// - `pp2-t-<cluster>-<unix ms>`: a write time, for time-based consistency;
/// - `pp2-g-<cluster>-<domain>.<seq>[_<domain>.<seq>…]`: reads must see this MariaDB GTID
///   position (cluster 0: MariaDB has no cluster identity).
///
/// A token is untrusted input: one from another cluster or of the wrong kind is refused by
/// [`ReplicaPool::session_with`](crate::ReplicaPool::session_with), and one ahead of the
/// primary is clamped to the primary's position after one check.
///
/// ```
/// use partypool::{CausalToken, TokenKind};
/// let t: CausalToken = "pp2-l-6f1a2b3c4d5e6f70-1-3000148".parse()?;
/// assert_eq!(t.to_string(), "pp2-l-6f1a2b3c4d5e6f70-1-3000148");
/// assert_eq!((t.kind(), t.timeline(), t.position()), (TokenKind::Position, Some(1), Some(0x3000148)));
/// assert!("pp2-l-zz-1-1".parse::<CausalToken>().is_err());
/// # Ok::<(), partypool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CausalToken {
    pub(super) cluster: u64,
    pub(super) mark: Mark,
}

/// What a token records, inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Mark {
    Position(At),
    Pending(u64),
    WrittenAt(u64),
}

impl CausalToken {
    /// The cluster it belongs to (PostgreSQL's system identifier; 0 when the backend has
    /// none).
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    /// What it records.
    pub fn kind(&self) -> TokenKind {
        match self.mark {
            Mark::Position(At { gtids: Some(_), .. }) => TokenKind::Gtid,
            Mark::Position(_) => TokenKind::Position,
            Mark::Pending(_) => TokenKind::Pending,
            Mark::WrittenAt(_) => TokenKind::Time,
        }
    }

    /// The log position reads must have reached, for a position token.
    pub fn position(&self) -> Option<u64> {
        match self.mark {
            Mark::Position(at) => Some(at.position),
            _ => None,
        }
    }

    /// The GTID position reads must have reached, for a GTID token.
    pub fn gtids(&self) -> Option<GtidSet> {
        match self.mark {
            Mark::Position(at) => at.gtids,
            _ => None,
        }
    }

    /// The timeline of that position, when the backend has timelines.
    pub fn timeline(&self) -> Option<u64> {
        match self.mark {
            Mark::Position(at) => at.timeline,
            _ => None,
        }
    }
}

impl fmt::Display for CausalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.cluster;
        match self.mark {
            Mark::Position(At { gtids: Some(g), .. }) => {
                write!(f, "pp2-g-{c:016x}-{}", g.to_token())
            }
            Mark::Position(At {
                position, timeline, ..
            }) => {
                write!(f, "pp2-l-{c:016x}-{:x}-{position:x}", timeline.unwrap_or(0))
            }
            Mark::Pending(t) => write!(f, "pp2-p-{c:016x}-{t:x}"),
            Mark::WrittenAt(t) => write!(f, "pp2-t-{c:016x}-{t:x}"),
        }
    }
}

impl FromStr for CausalToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidToken(format!(
                "{why} (expected pp2-l-<cluster>-<timeline>-<position>, pp2-g-<cluster>-<domain>.<seq>, pp2-p-<cluster>-<ms> or pp2-t-<cluster>-<ms>)"
            ))
        };
        let s = s.trim();
        if s.len() > 140 {
            return Err(bad("too long"));
        }
        let parts: Vec<&str> = s.split('-').collect();
        match parts.first() {
            Some(&"pp2") => {}
            Some(&"pp1") => return Err(bad("an old token format (pp1)")),
            _ => return Err(bad("not a partypool token")),
        }
        let hex = |v: Option<&&str>, what: &str| {
            let v = v.ok_or_else(|| bad(&format!("no {what}")))?;
            if v.is_empty() || v.starts_with('+') {
                return Err(bad(&format!("{what} is not hexadecimal")));
            }
            u64::from_str_radix(v, 16).map_err(|_| bad(&format!("{what} is not hexadecimal")))
        };
        let kind = parts.get(1).copied().ok_or_else(|| bad("no kind"))?;
        let cluster = hex(parts.get(2), "cluster")?;
        let (mark, len) = match kind {
            "l" => {
                let timeline = hex(parts.get(3), "timeline")?;
                let position = hex(parts.get(4), "position")?;
                let timeline = (timeline != 0).then_some(timeline);
                (
                    Mark::Position(At {
                        position,
                        timeline,
                        gtids: None,
                    }),
                    5,
                )
            }
            "g" => {
                let gtids = parts.get(3).ok_or_else(|| bad("no GTID position"))?;
                let gtids = GtidSet::from_token(gtids).map_err(|e| bad(&e))?;
                (
                    Mark::Position(At {
                        position: gtids.total(),
                        timeline: None,
                        gtids: Some(gtids),
                    }),
                    4,
                )
            }
            "p" => (Mark::Pending(hex(parts.get(3), "time")?), 4),
            "t" => (Mark::WrittenAt(hex(parts.get(3), "time")?), 4),
            _ => return Err(bad("unknown kind")),
        };
        if parts.len() != len {
            return Err(bad("trailing text"));
        }
        if matches!(
            mark,
            Mark::Position(At {
                position: u64::MAX,
                ..
            })
        ) {
            return Err(bad("position out of range"));
        }
        Ok(CausalToken { cluster, mark })
    }
}

impl Serialize for CausalToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CausalToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
