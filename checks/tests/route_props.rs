//! Property tests for the classifier: it never panics, and text inside literals, quoted
//! identifiers and comments can never change a decision.

use partypool::{Dialect, Target, route, route_in};
use proptest::prelude::*;

const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

fn sqlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("SELECT".to_owned()),
        Just("select".to_owned()),
        Just("WITH".to_owned()),
        Just("DELETE".to_owned()),
        Just("UPDATE".to_owned()),
        Just("FOR".to_owned()),
        Just("INTO".to_owned()),
        Just("EXPLAIN".to_owned()),
        Just("ANALYZE".to_owned()),
        Just("COPY".to_owned()),
        Just("nextval(".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(";".to_owned()),
        Just("'".to_owned()),
        Just("''".to_owned()),
        Just("\"".to_owned()),
        Just("`".to_owned()),
        Just("$$".to_owned()),
        Just("$q$".to_owned()),
        Just("E'\\'".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("--".to_owned()),
        Just("#".to_owned()),
        Just("\n".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        "[a-z_]{1,8}",
        "[0-9]{1,4}",
        "\\PC{0,3}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for d in DIALECTS {
            let _ = route_in(d, &text);
        }
    }

    #[test]
    fn sqlish_text_never_panics(sql in sqlish()) {
        for d in DIALECTS {
            let r = route_in(d, &sql);
            prop_assert!(!r.reason.is_empty());
        }
    }

    #[test]
    fn string_literal_contents_cannot_change_a_decision(x in "\\PC*") {
        let quoted = x.replace('\'', "''");
        prop_assert_eq!(route(&format!("SELECT '{quoted}' AS v")).target, Target::Replica);
        prop_assert_eq!(route(&format!("DELETE FROM t WHERE v = '{quoted}'")).target, Target::Primary);
        let e = x.replace('\\', "\\\\").replace('\'', "\\'");
        prop_assert_eq!(route(&format!("SELECT E'{e}'")).target, Target::Replica);
        prop_assert_eq!(route_in(Dialect::MySql, &format!("SELECT '{e}'")).target, Target::Replica);
    }

    #[test]
    fn quoted_identifiers_cannot_change_a_decision(x in "\\PC*") {
        let ident = x.replace('"', "\"\"");
        prop_assert_eq!(route(&format!("SELECT \"{ident}\" FROM t")).target, Target::Replica);
        let tick = x.replace('`', "``");
        prop_assert_eq!(route_in(Dialect::MySql, &format!("SELECT `{tick}` FROM t")).target, Target::Replica);
    }

    #[test]
    fn dollar_quoted_bodies_cannot_change_a_decision(x in "\\PC*") {
        prop_assume!(!x.contains("$body$"));
        prop_assert_eq!(route(&format!("SELECT $body${x}$body$")).target, Target::Replica);
    }

    #[test]
    fn comments_cannot_change_a_decision(x in "\\PC*") {
        prop_assume!(!x.contains("*/") && !x.contains("/*") && !x.contains("partypool:"));
        prop_assert_eq!(route(&format!("/* {x} */ SELECT 1 /* {x} */")).target, Target::Replica);
        prop_assert_eq!(route(&format!("/* {x} */ UPDATE t SET a = 1")).target, Target::Primary);
        let line = x.replace(['\n', '\r'], " ");
        prop_assert_eq!(route(&format!("-- {line}\nSELECT 1 -- {line}")).target, Target::Replica);
    }

    #[test]
    fn a_write_stays_a_write_after_any_reads(n in 0usize..5, write in prop::sample::select(vec![
        "DELETE FROM t", "UPDATE t SET a = 1", "INSERT INTO t VALUES (1)", "SELECT nextval('s')",
        "SELECT * FROM t FOR UPDATE", "SET x = 1", "CREATE TABLE t (a int)",
    ])) {
        let text = format!("{}{write}", "SELECT 1; ".repeat(n));
        prop_assert_eq!(route(&text).target, Target::Primary);
    }
}
