//! MariaDB GTID positions: the newest sequence number per replication domain.
//!
//! A MariaDB GTID is `domain-server-sequence`. Within a domain, sequence numbers only grow
//! (across promotions too, with `gtid_strict_mode`), so "replica R has applied the write W"
//! is, per domain of W, `R.seq >= W.seq` — which is what `MASTER_GTID_WAIT` checks, and what
//! [`GtidSet::contains`] checks without a round trip. The server id says who wrote, not how
//! far a log has come, so it is not kept.
//!
//! The set is a fixed array (no allocation, `Copy`): it rides in every session position,
//! which the read path copies. One primary writes in one domain; more appear with
//! multi-source replication or a per-session `gtid_domain_id`. A position with more than
//! [`GtidSet::MAX_DOMAINS`] domains is not representable: parsing it fails, and a session
//! whose write it was reads on the primary until the write has settled (the safe side).

use std::fmt;
use std::str::FromStr;

/// The newest sequence number per MariaDB replication domain, e.g. `@@gtid_slave_pos`.
///
/// ```
/// use partypool::GtidSet;
/// let replica: GtidSet = "0-1-100,1-2-7".parse()?;
/// let write: GtidSet = "0-3-99".parse()?;
/// assert!(replica.contains(&write));
/// assert!(!write.contains(&replica));
/// assert_eq!(replica.behind(&write), 0);
/// assert_eq!(write.behind(&replica), 1 + 7);
/// assert_eq!(replica.to_string(), "0-0-100,1-0-7");
/// # Ok::<(), partypool::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GtidSet {
    len: u8,
    /// `(domain, sequence)`, sorted by domain, domains distinct.
    entries: [(u32, u64); GtidSet::MAX_DOMAINS],
}

impl GtidSet {
    /// How many replication domains a set holds at most.
    pub const MAX_DOMAINS: usize = 4;

    /// The empty set (a server that has logged nothing).
    pub const fn new() -> Self {
        GtidSet {
            len: 0,
            entries: [(0, 0); GtidSet::MAX_DOMAINS],
        }
    }

    /// `(domain, sequence)` pairs, by domain.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.entries[..self.len as usize].iter().copied()
    }

    /// The sequence number reached in `domain` (0 if none).
    pub fn seq(&self, domain: u32) -> u64 {
        self.iter()
            .find(|(d, _)| *d == domain)
            .map_or(0, |(_, s)| s)
    }

    /// Whether nothing is in it.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raises `domain` to at least `seq`. `false` (and unchanged) when the set is full.
    pub fn raise(&mut self, domain: u32, seq: u64) -> bool {
        let n = self.len as usize;
        match self.entries[..n].binary_search_by_key(&domain, |(d, _)| *d) {
            Ok(i) => {
                self.entries[i].1 = self.entries[i].1.max(seq);
                true
            }
            Err(_) if n == Self::MAX_DOMAINS => false,
            Err(i) => {
                self.entries.copy_within(i..n, i + 1);
                self.entries[i] = (domain, seq);
                self.len += 1;
                true
            }
        }
    }

    /// Whether this position has reached `other` in every domain of `other`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.iter().all(|(d, s)| self.seq(d) >= s)
    }

    /// The newer of both in every domain; `None` if that needs too many domains.
    pub fn union(&self, other: &GtidSet) -> Option<GtidSet> {
        let mut out = *self;
        other.iter().all(|(d, s)| out.raise(d, s)).then_some(out)
    }

    /// How many transactions this position lacks to reach `ahead`: the sum over the domains
    /// of `ahead` of how far this one is behind (MariaDB's counterpart of PostgreSQL's lag
    /// in bytes).
    pub fn behind(&self, ahead: &GtidSet) -> u64 {
        ahead
            .iter()
            .map(|(d, s)| s.saturating_sub(self.seq(d)))
            .fold(0u64, u64::saturating_add)
    }

    /// The sum of the sequence numbers: a scalar that never decreases as the log moves on,
    /// and that a position containing another is never below.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, s)| s).fold(0u64, u64::saturating_add)
    }

    /// The compact form used in session tokens: `domain.seq` in hexadecimal, joined by `_`.
    pub(crate) fn to_token(self) -> String {
        let mut out = String::new();
        for (i, (d, s)) in self.iter().enumerate() {
            if i > 0 {
                out.push('_');
            }
            out.push_str(&format!("{d:x}.{s:x}"));
        }
        out
    }

    /// Parses [`to_token`](Self::to_token)'s form.
    pub(crate) fn from_token(s: &str) -> Result<GtidSet, String> {
        let hex = |v: &str| -> Result<u64, String> {
            if v.is_empty() || v.starts_with('+') {
                return Err(format!("{v:?} is not hexadecimal"));
            }
            u64::from_str_radix(v, 16).map_err(|_| format!("{v:?} is not hexadecimal"))
        };
        let mut set = GtidSet::new();
        if s.is_empty() {
            return Err("no GTID position".into());
        }
        for part in s.split('_') {
            let (d, q) = part
                .split_once('.')
                .ok_or_else(|| format!("{part:?} is not domain.sequence"))?;
            let d = u32::try_from(hex(d)?).map_err(|_| "domain out of range".to_owned())?;
            if set.iter().any(|(x, _)| x == d) {
                return Err(format!("domain {d} twice"));
            }
            if !set.raise(d, hex(q)?) {
                return Err(format!("more than {} domains", Self::MAX_DOMAINS));
            }
        }
        Ok(set)
    }
}

impl FromStr for GtidSet {
    type Err = crate::error::Error;

    /// MariaDB's form, as in `@@gtid_binlog_pos`, `@@gtid_slave_pos` and `@@last_gtid`:
    /// `domain-server-seq`, comma-separated, possibly empty. A domain listed twice keeps
    /// its newest sequence number.
    fn from_str(s: &str) -> Result<Self, crate::error::Error> {
        let bad = |why: String| crate::error::Error::InvalidGtid(format!("{s:?}: {why}"));
        let mut set = GtidSet::new();
        for gtid in s.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut parts = gtid.split('-');
            let (Some(d), Some(server), Some(q), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(format!("{gtid:?} is not domain-server-sequence")));
            };
            let d: u32 = d
                .parse()
                .map_err(|_| bad(format!("bad domain in {gtid:?}")))?;
            server
                .parse::<u32>()
                .map_err(|_| bad(format!("bad server id in {gtid:?}")))?;
            let q: u64 = q
                .parse()
                .map_err(|_| bad(format!("bad sequence number in {gtid:?}")))?;
            if !set.raise(d, q) {
                return Err(bad(format!("more than {} domains", Self::MAX_DOMAINS)));
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    /// MariaDB's form with server id 0 (which `MASTER_GTID_WAIT` ignores).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, s)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-0-{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GtidSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> GtidSet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_mariadb_prints() {
        assert_eq!(set(""), GtidSet::new());
        assert_eq!(set("0-1-5").seq(0), 5);
        let s = set("1-2-7, 0-1-100");
        assert_eq!(s.iter().collect::<Vec<_>>(), [(0, 100), (1, 7)]);
        assert_eq!(
            set("0-1-5,0-2-9").seq(0),
            9,
            "a domain twice keeps the newest"
        );
        for bad in [
            "0-1",
            "x-1-2",
            "0-1-2-3",
            "0--5",
            "0-1-5,1-1-1,2-1-1,3-1-1,4-1-1",
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_is_per_domain() {
        // The scalar total cannot decide this one: 140 >= 100, but domain 0 is behind.
        let replica = set("0-1-90,1-1-50");
        let write = set("0-1-100");
        assert!(replica.total() >= write.total());
        assert!(!replica.contains(&write));
        assert!(set("0-1-100,1-1-50").contains(&write));
        assert!(replica.contains(&GtidSet::new()));
        assert_eq!(replica.behind(&write), 10);
    }

    #[test]
    fn union_takes_the_newest_per_domain() {
        let u = set("0-1-5,2-1-1").union(&set("0-1-3,1-1-4")).unwrap();
        assert_eq!(u.iter().collect::<Vec<_>>(), [(0, 5), (1, 4), (2, 1)]);
        let full = set("0-1-1,1-1-1,2-1-1,3-1-1");
        assert!(full.union(&set("4-1-1")).is_none());
        assert_eq!(full.union(&set("3-1-9")).unwrap().seq(3), 9);
    }

    #[test]
    fn token_form_round_trips_and_rejects_junk() {
        let s = set("0-1-255,10-1-1");
        assert_eq!(s.to_token(), "0.ff_a.1");
        assert_eq!(GtidSet::from_token("0.ff_a.1").unwrap(), s);
        for bad in [
            "",
            "0",
            "0.",
            ".1",
            "0.1_0.2",
            "0.+1",
            "0.1_",
            "g.1",
            "100000000.1",
        ] {
            assert!(GtidSet::from_token(bad).is_err(), "{bad}");
        }
    }
}
