//! The one reconcile: a source's desired members against the members it has now, as joins
//! and drains.
//!
//! Every source of members — DNS names, Patroni, `add_node` / `remove_node` — ends here. A
//! member is kept when the source still names it at the same address; the others drain, and
//! desired members not kept join. A member that *moved* (the same name at a new address, as a
//! Patroni member whose pod was rescheduled) joins only after its old address drained, so it
//! is never in the pool twice; a new name joins before anything drains, so a DNS name that
//! swaps its addresses never leaves the pool empty in between.

use crate::topology::{Member, host_port};

/// What to do to make the members of one source what it says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// New names: join first.
    pub(crate) join: Vec<Member>,
    /// Names the source no longer lists, or lists at another address: drain.
    pub(crate) drain: Vec<String>,
    /// Names that moved: join once their old address has drained.
    pub(crate) rejoin: Vec<Member>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.join.is_empty() && self.drain.is_empty() && self.rejoin.is_empty()
    }
}

/// The plan that turns `current` — the source's members now, as (name, URL) — into
/// `desired`. A desired member without a name is named by its address.
pub(crate) fn plan(desired: &[Member], current: &[(String, String)]) -> Plan {
    let name_of = |m: &Member| m.name.clone().unwrap_or_else(|| host_port(&m.url));
    let mut out = Plan::default();
    for (name, url) in current {
        let same = desired
            .iter()
            .any(|m| name_of(m) == *name && host_port(&m.url) == host_port(url));
        if !same {
            out.drain.push(name.clone());
        }
    }
    for m in desired {
        let name = name_of(m);
        match current.iter().find(|(n, _)| *n == name) {
            None => out.join.push(m.clone()),
            Some((_, url)) if host_port(url) != host_port(&m.url) => out.rejoin.push(m.clone()),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{Origin, Role};

    fn member(name: &str, host: &str) -> Member {
        Member {
            url: format!("postgres://app@{host}/app"),
            role: Role::Discovered,
            origin: Origin::Patroni,
            name: Some(name.into()),
            zone: None,
        }
    }

    fn current(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, h)| (n.to_string(), format!("postgres://app@{h}/app")))
            .collect()
    }

    #[test]
    fn reconcile_table() {
        // (desired, current, join, drain, rejoin)
        type Row = (
            &'static str,
            Vec<Member>,
            Vec<(String, String)>,
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let rows: Vec<Row> = vec![
            (
                "nothing changed",
                vec![member("a", "h1:5432"), member("b", "h2:5432")],
                current(&[("a", "h1:5432"), ("b", "h2:5432")]),
                &[],
                &[],
                &[],
            ),
            (
                "a new member joins",
                vec![member("a", "h1:5432"), member("c", "h3:5432")],
                current(&[("a", "h1:5432")]),
                &["c"],
                &[],
                &[],
            ),
            (
                "a vanished member drains",
                vec![member("a", "h1:5432")],
                current(&[("a", "h1:5432"), ("b", "h2:5432")]),
                &[],
                &["b"],
                &[],
            ),
            (
                "a moved member drains, then joins at its new address",
                vec![member("a", "h1:5432"), member("b", "h9:5432")],
                current(&[("a", "h1:5432"), ("b", "h2:5432")]),
                &[],
                &["b"],
                &["b"],
            ),
            (
                "DNS: an address swapped is a new name and a vanished one",
                vec![member("db/10.0.0.2:5432", "10.0.0.2:5432")],
                current(&[("db/10.0.0.1:5432", "10.0.0.1:5432")]),
                &["db/10.0.0.2:5432"],
                &["db/10.0.0.1:5432"],
                &[],
            ),
            (
                "a source with nobody yet",
                vec![member("a", "h1:5432")],
                vec![],
                &["a"],
                &[],
                &[],
            ),
        ];
        for (what, desired, now, join, drain, rejoin) in rows {
            let p = plan(&desired, &now);
            let names = |v: &[Member]| -> Vec<String> {
                v.iter().map(|m| m.name.clone().unwrap()).collect()
            };
            assert_eq!(names(&p.join), join, "{what}: join");
            assert_eq!(p.drain, drain, "{what}: drain");
            assert_eq!(names(&p.rejoin), rejoin, "{what}: rejoin");
            assert_eq!(
                p.is_empty(),
                join.is_empty() && drain.is_empty() && rejoin.is_empty()
            );
        }
    }
}
