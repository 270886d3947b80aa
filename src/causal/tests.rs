//! Tokens and the read decision, without a database.

use std::time::Duration;

use super::token::Mark;
use super::*;

const RULES: Rules = Rules {
    support: CausalSupport::Positions,
    sticky: None,
    settle: Duration::from_secs(10),
    scope: crate::config::Scope::Process,
};

fn at(position: u64, timeline: u64) -> At {
    At {
        position,
        timeline: Some(timeline),
        gtids: None,
    }
}

#[test]
fn consistency_reads_from_config_files() {
    let sticky: Consistency = serde_json::from_str(r#"{ "sticky_for": "2s" }"#).unwrap();
    assert_eq!(sticky, Consistency::StickyFor(Duration::from_secs(2)));
    let causal: Consistency = serde_json::from_str(r#""causal""#).unwrap();
    assert_eq!(causal, Consistency::Causal);
}

#[test]
fn tokens_round_trip() {
    for mark in [
        Mark::Position(at(0x3000148, 3)),
        Mark::Pending(1_790_000_000_000),
        Mark::WrittenAt(1_790_000_000_000),
    ] {
        let t = CausalToken {
            cluster: u64::MAX,
            mark,
        };
        assert_eq!(t.to_string().parse::<CausalToken>().unwrap(), t);
    }
}

#[test]
fn gtid_tokens_round_trip_and_compare_per_domain() {
    let t: CausalToken = "pp2-g-0000000000000000-0.64_1.5".parse().unwrap();
    assert_eq!(t.kind(), TokenKind::Gtid);
    assert_eq!(t.to_string(), "pp2-g-0000000000000000-0.64_1.5");
    let g = t.gtids().unwrap();
    assert_eq!((g.seq(0), g.seq(1), t.position()), (100, 5, Some(105)));
    for bad in [
        "pp2-g-0",
        "pp2-g-0-",
        "pp2-g-0-0.1-2",
        "pp2-g-0-0.1_0.2",
        "pp2-g-0-0.1_1.1_2.1_3.1_4.1",
    ] {
        assert!(bad.parse::<CausalToken>().is_err(), "{bad}");
    }
    // A session's position merges per domain, and a token ahead in any domain is
    // clamped to the primary's position.
    let rules = Rules {
        support: CausalSupport::Gtids,
        ..RULES
    };
    assert_eq!(rules.token_kind(), Some(TokenKind::Gtid));
    let gat = |s: &str| At::from_log(crate::positions::LogPosition::gtid(s.parse().unwrap()));
    let s = SessionState::from_token(t);
    s.reconcile(gat("0-1-200,1-1-4"), &rules, now_ms());
    match s.read_at(&rules, None, now_ms()) {
        ReadAt::AtLeast(at) => assert_eq!(at.gtids, gat("0-1-200,1-1-4").gtids),
        other => panic!("{other:?}"),
    }
    s.recorded(gat("0-1-201,1-1-4,2-1-1"));
    s.recorded(gat("0-1-150"));
    let g = s.token(0, false).unwrap().gtids().unwrap();
    assert_eq!((g.seq(0), g.seq(1), g.seq(2)), (201, 4, 1));
}

#[test]
fn garbled_tokens_are_errors() {
    for bad in [
        "",
        "pp2",
        "pp1-l-1-10",
        "pp2-l-1-1",
        "pp2-l-1-1-10-0",
        "pp2-x-1-1",
        "pp2-l-+1-1-1",
        "pp2-l-1-1-ffffffffffffffff",
        "pp2-l-1-1-1ffffffffffffffff",
        &"pp2-l-1-1-".repeat(20),
    ] {
        assert!(bad.parse::<CausalToken>().is_err(), "{bad:?}");
    }
}

#[test]
fn the_read_decision() {
    let s = SessionState::default();
    assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::Anywhere);
    s.recorded(at(100, 1));
    assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::AtLeast(at(100, 1)));
    // The writer moved to a newer timeline: the position means nothing there.
    assert_eq!(s.read_at(&RULES, Some(2), 0), ReadAt::PrimaryThenRecord);
    // A write being recorded: the primary.
    s.write_started();
    assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::Primary);
    assert_eq!(s.token(7, false).unwrap().kind(), TokenKind::Pending);
    s.write_recorded();
    // A write whose position is unknown: the primary until it settles, then the
    // primary once more to record its position.
    s.unknown(1_000);
    assert_eq!(s.read_at(&RULES, Some(1), 5_000), ReadAt::Primary);
    assert_eq!(
        s.read_at(&RULES, Some(1), 11_000),
        ReadAt::PrimaryThenRecord
    );
    assert_eq!(
        s.token(7, false).unwrap().to_string(),
        "pp2-p-0000000000000007-3e8"
    );
    s.reconcile(at(500, 1), &RULES, 11_000);
    assert_eq!(
        s.read_at(&RULES, Some(1), 11_000),
        ReadAt::AtLeast(at(500, 1))
    );
}

#[test]
fn settling_too_early_records_nothing() {
    let s = SessionState::default();
    s.unknown(1_000);
    s.reconcile(at(500, 1), &RULES, 2_000);
    assert_eq!(s.read_at(&RULES, Some(1), 2_000), ReadAt::Primary);
}

#[test]
fn positions_ahead_of_the_primary_are_clamped() {
    let s = SessionState::from_token("pp2-l-7-1-ffffffffffff".parse().unwrap());
    s.reconcile(at(0x5000, 1), &RULES, 0);
    assert_eq!(s.token(7, false).unwrap().position(), Some(0x5000));
    // A position this session recorded is never lowered (a concurrent write of the same
    // session may have recorded it after the primary's position was read).
    s.recorded(at(0x6000, 1));
    s.reconcile(at(0x5800, 1), &RULES, 0);
    assert_eq!(s.token(7, false).unwrap().position(), Some(0x6000));
}

#[test]
fn a_forged_position_is_replaced_by_the_sessions_first_write() {
    let s = SessionState::from_token("pp2-l-7-1-ffffffffffff".parse().unwrap());
    s.recorded(at(0x5000, 1));
    assert_eq!(s.token(7, false).unwrap().position(), Some(0x5000));
}

#[test]
fn future_times_in_tokens_count_as_now() {
    let s = SessionState::from_token("pp2-p-7-ffffffffffff".parse().unwrap());
    let later = now_ms() + RULES.settle.as_millis() as u64 + 1_000;
    assert_eq!(s.read_at(&RULES, Some(1), later), ReadAt::PrimaryThenRecord);
}

#[test]
fn a_forged_timeline_is_replaced_once() {
    let s = SessionState::from_token("pp2-l-7-9-10".parse().unwrap());
    assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::PrimaryThenRecord);
    s.reconcile(at(0x5000, 1), &RULES, 0);
    assert_eq!(
        s.read_at(&RULES, Some(1), 0),
        ReadAt::AtLeast(at(0x5000, 1))
    );
}

#[test]
fn timelines_only_move_forward() {
    let s = SessionState::default();
    s.recorded(at(900, 2));
    s.recorded(at(5_000, 1));
    assert_eq!(s.token(1, false).unwrap().timeline(), Some(2));
    assert_eq!(s.token(1, false).unwrap().position(), Some(900));
    s.recorded(at(10, 3));
    assert_eq!(s.token(1, false).unwrap().position(), Some(10));
}

#[test]
fn time_based_sessions() {
    let rules = Rules {
        sticky: Some(Duration::from_secs(1)),
        ..RULES
    };
    let s = SessionState::default();
    assert_eq!(s.read_at(&rules, None, now_ms()), ReadAt::Anywhere);
    s.wrote_now();
    assert_eq!(s.read_at(&rules, None, now_ms()), ReadAt::Primary);
    assert_eq!(s.read_at(&rules, None, now_ms() + 2_000), ReadAt::Anywhere);
    assert_eq!(s.token(0, false).unwrap().kind(), TokenKind::Time);
}

#[test]
fn an_untrusted_pending_token_costs_one_primary_read() {
    let now = now_ms();
    let token: CausalToken = format!("pp2-p-7-{now:x}").parse().unwrap();
    let trusted = SessionState::from_client_token(token, true);
    assert_eq!(trusted.read_at(&RULES, Some(1), now), ReadAt::Primary);
    let untrusted = SessionState::from_client_token(token, false);
    assert_eq!(
        untrusted.read_at(&RULES, Some(1), now),
        ReadAt::PrimaryThenRecord
    );
    // That read records the primary's position: the next ones may use replicas.
    let primary = At {
        position: 100,
        timeline: Some(1),
        gtids: None,
    };
    untrusted.reconcile(primary, &RULES, now);
    assert_eq!(
        untrusted.read_at(&RULES, Some(1), now),
        ReadAt::AtLeast(primary)
    );
}
