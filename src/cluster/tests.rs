//! Every rule about roles as a row: a scenario the real-cluster tests cover, replayed as
//! events through [`decide`] in microseconds, without a database.

use std::time::{Duration, Instant};

use super::Settings;
use super::decide::{Event, Observation, decide, has_other_writable};
use super::view::View;
use crate::backend::{Channel, Probe, Replication};
use crate::causal::{CausalSupport, Rules};
use crate::config::Backoff;
use crate::roles::Role;

fn settings(follow_promotion: bool, max_lag: Option<Duration>, max_bytes: Option<u64>) -> Settings {
    Settings {
        health_check_interval: Duration::from_secs(1),
        health_check_timeout: Duration::from_secs(1),
        ban_backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        },
        max_replica_lag: max_lag,
        max_replica_lag_bytes: max_bytes,
        follow_promotion,
        max_read_retries: 2,
        statement_timeout: None,
        rules: Rules {
            support: CausalSupport::Positions,
            sticky: None,
            settle: Duration::from_secs(1),
            scope: crate::config::Scope::Process,
        },
        causal_wait: Duration::from_millis(50),
        position_interval: Duration::from_millis(5),
        idle_probe_after: None,
        wake_timeout: Duration::from_secs(1),
    }
}

/// A probe of member `i`: writable (`primary`) or a standby, on `timeline`, of cluster `id`,
/// at `position`.
fn up(i: usize, primary: bool, timeline: u64, id: u64) -> Event {
    up_at(i, primary, timeline, id, 100, None)
}

fn up_at(
    i: usize,
    primary: bool,
    timeline: u64,
    id: u64,
    position: u64,
    age: Option<Duration>,
) -> Event {
    Event::Observed(
        i,
        Observation::Up(Probe {
            in_recovery: Some(!primary),
            position: Some(position),
            timeline: Some(timeline),
            cluster_id: Some(id),
            replay_age: age,
            ..Probe::default()
        }),
    )
}

/// A probe without timelines or identity (MariaDB): writable or a replica, at `gtids`.
fn up_gtid(i: usize, primary: bool, gtids: &str) -> Event {
    let gtids: crate::positions::GtidSet = gtids.parse().unwrap();
    Event::Observed(
        i,
        Observation::Up(Probe {
            in_recovery: Some(!primary),
            position: Some(gtids.total()),
            gtids: Some(gtids),
            ..Probe::default()
        }),
    )
}

fn down(i: usize) -> Event {
    Event::Observed(i, Observation::Down("refused".into()))
}

const P: Role = Role::Primary;
const R: Role = Role::Replica;
const D: Role = Role::Discovered;

/// A batch of events, and what must hold of the view after it.
type Step = (Vec<Event>, fn(&View));

/// One scenario: the members' declared roles, then batches of events, each followed by what
/// must hold of the view.
struct Row {
    name: &'static str,
    settings: Settings,
    roles: &'static [Role],
    steps: Vec<Step>,
}

fn run(rows: Vec<Row>) {
    for row in rows {
        let names = row
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, format!("n{i}")));
        let mut view = View::new(names);
        let mut now = Instant::now();
        // The cluster's identity is the first writer's, as `connect` sets it.
        view = decide(&view, &[Event::Identity(Some(1))], &row.settings, now);
        for (step, (events, check)) in row.steps.iter().enumerate() {
            now += Duration::from_millis(10);
            view = decide(&view, events, &row.settings, now);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&view)));
            if outcome.is_err() {
                panic!("row {:?}, step {step}: {view:#?}", row.name);
            }
        }
    }
}

#[test]
fn elections() {
    let follow = settings(true, None, None);
    run(vec![
        Row {
            name: "accidental promotion: a healthy writer keeps the writes against a newer timeline",
            settings: follow,
            roles: &[P, R, R],
            steps: vec![(
                vec![
                    up(0, true, 1, 1),
                    up(1, true, 2, 1),
                    up(2, false, 1, 1),
                    Event::Round,
                ],
                |v| {
                    assert_eq!(v.writer, 0);
                    assert!(v.nodes[1].rival && v.nodes[1].excluded(Some(1), "n0").is_some());
                    assert_eq!(v.readable, [2], "the rival serves no reads");
                },
            )],
        },
        Row {
            name: "writes follow a promotion and never go back to an unfenced old primary",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up(0, true, 1, 1), up(1, false, 1, 1), Event::Round],
                    |v| {
                        assert_eq!((v.writer, v.readable.as_slice()), (0, &[1][..]));
                    },
                ),
                (vec![down(0), up(1, true, 2, 1), Event::Round], |v| {
                    assert_eq!(v.writer, 1);
                    assert!(v.nodes[0].deposed);
                    assert_eq!(v.writes_timeline, Some(2));
                }),
                // The old primary is back, unfenced; the new one stalls.
                (vec![up(0, true, 1, 1), down(1), Event::Round], |v| {
                    assert_eq!(v.writer, 1, "never back to an older timeline");
                    assert!(
                        !v.nodes[1]
                            .ban
                            .is_banned(Instant::now() + Duration::from_millis(50))
                    );
                    assert!(v.block.is_none(), "writes wait for the writer");
                    assert!(v.nodes[0].rival);
                }),
            ],
        },
        Row {
            name: "killed promoted node: the deposed old primary gets no writes",
            settings: follow,
            roles: &[P, R, R],
            steps: vec![
                (
                    vec![
                        up(0, true, 1, 1),
                        up(1, false, 1, 1),
                        up(2, false, 1, 1),
                        Event::Round,
                    ],
                    |v| assert_eq!(v.writer, 0),
                ),
                (
                    vec![down(0), up(1, true, 2, 1), up(2, false, 2, 1), Event::Round],
                    |v| assert_eq!(v.writer, 1),
                ),
                (vec![up(0, true, 1, 1), down(1), Event::Round], |v| {
                    assert_eq!(v.writer, 1);
                    assert_eq!(v.readable, [2]);
                }),
            ],
        },
        Row {
            name: "a node of another cluster serves nothing, even on a newer timeline",
            settings: follow,
            roles: &[P, R, D],
            steps: vec![
                (
                    vec![up(0, true, 1, 1), up(1, false, 1, 7), Event::Round],
                    |v| {
                        assert!(v.nodes[1].foreign && v.nodes[1].healthy);
                        assert!(v.readable.is_empty());
                        assert!(
                            v.nodes[1]
                                .excluded(Some(1), "n0")
                                .unwrap()
                                .contains("another cluster")
                        );
                    },
                ),
                (vec![up(1, false, 1, 1), Event::Round], |v| {
                    assert_eq!(v.readable, [1])
                }),
                (vec![down(0), up(2, true, 5, 9), Event::Round], |v| {
                    assert_eq!(v.writer, 0, "never to another cluster's node");
                }),
            ],
        },
        Row {
            name: "a writer behind or foreign blocks the writes",
            settings: follow,
            roles: &[P],
            steps: vec![
                (vec![up(0, true, 2, 1), Event::Round], |v| {
                    assert!(v.block.is_none())
                }),
                // Its address now leads to an old primary on timeline 1.
                (vec![up(0, true, 1, 1), Event::Round], |v| {
                    assert!(v.block.as_ref().unwrap().contains("older timeline"))
                }),
                // Or to another cluster's node.
                (vec![up(0, true, 2, 9), Event::Round], |v| {
                    assert!(v.block.as_ref().unwrap().contains("another cluster"))
                }),
            ],
        },
        Row {
            name: "without follow_promotion a lost writer blocks the writes",
            settings: settings(false, None, None),
            roles: &[P, R],
            steps: vec![
                (vec![up(0, true, 1, 1), Event::Round], |v| {
                    assert!(v.block.is_none())
                }),
                (vec![down(0), up(1, true, 2, 1), Event::Round], |v| {
                    assert_eq!(v.writer, 0);
                    assert!(
                        v.block
                            .as_ref()
                            .unwrap()
                            .contains("follow_promotion is off")
                    );
                }),
            ],
        },
        Row {
            name: "every node a standby: writes fail at once, saying so",
            settings: follow,
            roles: &[D, D],
            steps: vec![(
                vec![up(0, false, 1, 1), up(1, false, 1, 1), Event::Round],
                |v| {
                    assert!(v.block.as_ref().unwrap().contains("no node takes writes"));
                    assert_eq!(v.readable, [0, 1]);
                },
            )],
        },
        Row {
            name: "removed writer: its same-timeline successor takes the writes",
            settings: follow,
            roles: &[P, R, D],
            steps: vec![
                (
                    vec![up(0, true, 3, 1), up(1, false, 3, 1), Event::Round],
                    |v| assert!(!has_other_writable(v, 0)),
                ),
                // The primary at a new address (a restarted pod): writable, the same timeline.
                (vec![up(2, true, 3, 1), Event::Round], |v| {
                    assert_eq!(v.writer, 0, "a rival while the writer holds");
                    assert!(
                        has_other_writable(v, 0),
                        "it may take over once the writer is removed"
                    );
                }),
                (vec![Event::Removed(0), Event::Elect], |v| {
                    assert_eq!(v.writer, 2);
                    assert!(v.block.is_none());
                }),
            ],
        },
        Row {
            name: "removed writer with nobody to take over: writes fail with the reason",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up(0, true, 3, 1), up(1, false, 3, 1), Event::Round],
                    |_| {},
                ),
                (vec![Event::Removed(0), Event::Elect], |v| {
                    assert!(v.block.as_ref().unwrap().contains("removed"));
                    assert_eq!(v.readable, [1]);
                }),
            ],
        },
        Row {
            name: "MariaDB: a deposed writer must be seen as a replica before it takes writes again",
            settings: follow,
            roles: &[P, R, R],
            steps: vec![
                (
                    vec![
                        up_gtid(0, true, "0-1-10"),
                        up_gtid(1, false, "0-1-10"),
                        up_gtid(2, false, "0-1-10"),
                        Event::Round,
                    ],
                    |v| assert_eq!(v.writer, 0),
                ),
                (
                    vec![down(0), up_gtid(1, true, "0-1-10"), Event::Round],
                    |v| assert_eq!(v.writer, 1),
                ),
                // The old primary is back writable; then the promoted one dies.
                (
                    vec![up_gtid(0, true, "0-1-10"), down(1), Event::Round],
                    |v| assert_eq!(v.writer, 1, "the old primary lost the writes"),
                ),
                // An operator makes it a replica of the new primary, then promotes it again.
                (vec![up_gtid(0, false, "0-2-20"), Event::Round], |v| {
                    assert!(!v.nodes[0].deposed)
                }),
                (vec![up_gtid(0, true, "0-2-20"), Event::Round], |v| {
                    assert_eq!(v.writer, 0);
                    assert!(v.nodes[1].deposed);
                }),
            ],
        },
        Row {
            name: "MariaDB: a node that never replicated is a second primary, not a promoted one",
            settings: follow,
            roles: &[P, R, R],
            steps: vec![
                (
                    vec![
                        up_gtid(0, true, "0-1-10"),
                        up_gtid(2, true, "0-3-4"),
                        Event::Round,
                    ],
                    |_| {},
                ),
                (vec![down(0), Event::Round], |v| assert_eq!(v.writer, 0)),
                (
                    vec![
                        up_gtid(1, false, "0-1-10"),
                        up_gtid(1, true, "0-1-10"),
                        Event::Round,
                    ],
                    |v| assert_eq!(v.writer, 1),
                ),
            ],
        },
    ]);
}

#[test]
fn health_and_lag() {
    let follow = settings(true, None, None);
    let lag_limit = settings(true, Some(Duration::from_secs(1)), None);
    run(vec![
        Row {
            name: "a failed probe takes a replica out and bans it; the next success readmits it",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up(0, true, 1, 1), up(1, false, 1, 1), Event::Round],
                    |v| assert_eq!(v.readable, [1]),
                ),
                (vec![down(1)], |v| {
                    assert!(v.readable.is_empty());
                    assert!(
                        v.nodes[1]
                            .ban
                            .is_banned(Instant::now() + Duration::from_millis(15))
                    );
                    assert_eq!(v.nodes[1].last_error.as_deref(), Some("refused"));
                }),
                (vec![up(1, false, 1, 1)], |v| {
                    assert_eq!(v.readable, [1]);
                    assert!(
                        !v.nodes[1]
                            .ban
                            .is_banned(Instant::now() + Duration::from_millis(30))
                    );
                }),
            ],
        },
        Row {
            name: "full pool vs down node: a statement error is no observation, only a probe takes a node out",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up(0, true, 1, 1), up(1, false, 1, 1), Event::Round],
                    |_| {},
                ),
                // The pool timed out waiting for a connection: nothing is observed.
                (vec![Event::Round], |v| assert_eq!(v.readable, [1])),
            ],
        },
        Row {
            name: "the writer is never banned; a primary that is not the writer is",
            settings: follow,
            roles: &[P, D],
            steps: vec![(
                vec![up(0, true, 1, 1), Event::Round, down(0), down(1)],
                |v| {
                    let soon = Instant::now() + Duration::from_millis(15);
                    assert!(!v.nodes[0].ban.is_banned(soon) && !v.nodes[0].healthy);
                    assert!(v.nodes[1].ban.is_banned(soon));
                },
            )],
        },
        Row {
            name: "lag flapping: out above the limit, back only below half of it",
            settings: lag_limit,
            roles: &[P, R],
            steps: vec![
                (
                    vec![
                        up_at(0, true, 1, 1, 1_000, None),
                        up_at(1, false, 1, 1, 990, Some(Duration::from_millis(900))),
                        Event::Round,
                    ],
                    |v| {
                        assert_eq!(v.readable, [1]);
                        assert_eq!(v.nodes[1].lag_bytes, 10);
                    },
                ),
                (
                    vec![
                        up_at(1, false, 1, 1, 990, Some(Duration::from_millis(1_100))),
                        Event::Round,
                    ],
                    |v| {
                        assert!(
                            v.nodes[1].lagging && v.readable.is_empty(),
                            "over the limit: out"
                        )
                    },
                ),
                (
                    vec![
                        up_at(1, false, 1, 1, 990, Some(Duration::from_millis(800))),
                        Event::Round,
                    ],
                    |v| {
                        assert!(
                            v.readable.is_empty(),
                            "between half and the limit: still out"
                        )
                    },
                ),
                (
                    vec![
                        up_at(1, false, 1, 1, 995, Some(Duration::from_millis(400))),
                        Event::Round,
                    ],
                    |v| assert_eq!(v.readable, [1], "below half: back"),
                ),
                (
                    vec![
                        up_at(1, false, 1, 1, 1_000, Some(Duration::from_secs(60))),
                        Event::Round,
                    ],
                    |v| {
                        assert_eq!(
                            (v.nodes[1].lag, v.readable.as_slice()),
                            (Duration::ZERO, &[1][..]),
                            "caught up: no lag however old the last commit"
                        )
                    },
                ),
            ],
        },
        Row {
            name: "the byte limit works alone",
            settings: settings(true, None, Some(1_000)),
            roles: &[P, R],
            steps: vec![(
                vec![
                    up_at(0, true, 1, 1, 10_000, None),
                    up_at(1, false, 1, 1, 4_000, Some(Duration::ZERO)),
                    Event::Round,
                ],
                |v| assert!(v.nodes[1].lagging && v.readable.is_empty()),
            )],
        },
        Row {
            name: "MariaDB: lag is in transactions, summed over domains",
            settings: follow,
            roles: &[P, R, R],
            steps: vec![(
                vec![
                    up_gtid(0, true, "0-1-100,1-1-5"),
                    up_gtid(1, false, "0-1-90,1-1-5"),
                    up_gtid(2, false, "0-1-100,1-1-5"),
                    Event::Round,
                ],
                |v| assert_eq!((v.nodes[1].lag_bytes, v.nodes[2].lag_bytes), (10, 0)),
            )],
        },
        Row {
            name: "a replication thread stopped with an error takes a replica out until it runs again",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up_gtid(0, true, "0-1-10"), broken(1, true), Event::Round],
                    |v| {
                        assert!(v.readable.is_empty());
                        assert!(v.nodes[1].excluded(None, "n0").unwrap().contains("stopped"));
                    },
                ),
                (vec![broken(1, false), Event::Round], |v| {
                    assert_eq!(v.readable, [1])
                }),
            ],
        },
        Row {
            name: "a Patroni veto keeps a member out of the reads until lifted",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![
                        up(0, true, 1, 1),
                        up(1, false, 1, 1),
                        Event::Veto(1, Some("Patroni reports it stopped".into())),
                    ],
                    |v| {
                        assert!(v.readable.is_empty());
                        assert_eq!(
                            v.nodes[1].excluded(Some(1), "n0").as_deref(),
                            Some("Patroni reports it stopped")
                        );
                    },
                ),
                (vec![Event::Veto(1, None)], |v| assert_eq!(v.readable, [1])),
            ],
        },
        Row {
            name: "a removed replica serves nothing; a joined one serves once a probe saw it",
            settings: follow,
            roles: &[P, R],
            steps: vec![
                (
                    vec![up(0, true, 1, 1), up(1, false, 1, 1), Event::Round],
                    |_| {},
                ),
                (vec![Event::Removed(1), Event::Elect], |v| {
                    assert!(v.readable.is_empty())
                }),
                (vec![Event::Joined(D, "n2".into())], |v| {
                    assert!(v.readable.is_empty())
                }),
                (vec![up(2, false, 1, 1), Event::Round], |v| {
                    assert_eq!(v.readable, [2])
                }),
            ],
        },
    ]);
}

/// A MariaDB replica probe with its replication channel running, or stopped by an error.
fn broken(i: usize, stopped: bool) -> Event {
    let gtids: crate::positions::GtidSet = "0-1-10".parse().unwrap();
    let mut channel = Channel {
        source: "127.0.0.1:3306".into(),
        io_running: "Yes".into(),
        sql_running: "Yes".into(),
        seconds_behind: Some(0),
        ..Channel::default()
    };
    if stopped {
        channel.sql_running = "No".into();
        channel.last_sql_error = Some("1062: duplicate".into());
        channel.seconds_behind = None;
    }
    Event::Observed(
        i,
        Observation::Up(Probe {
            in_recovery: Some(true),
            position: Some(gtids.total()),
            gtids: Some(gtids),
            replication: Some(Replication {
                channels: vec![channel],
                unavailable: None,
            }),
            ..Probe::default()
        }),
    )
}

/// Zone affinity in [`super::Cluster::pick`]: replicas of the preferred zone first; the
/// others only when none of those qualifies (down, behind, saturated).
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn reads_prefer_the_local_zone_and_spill_only_when_it_cannot_serve() {
    use std::sync::Arc;

    use super::Cluster;
    use crate::node::Node;

    let node = |name: &str, role: Role, local: bool, max: u32| {
        let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(max)
            .connect_lazy("sqlite::memory:")
            .unwrap();
        let mut n = Node::new(name.into(), role, "sqlite::memory:".into(), None, pool);
        n.local = local;
        Arc::new(n)
    };
    let nodes = vec![
        node("primary", Role::Primary, true, 1),
        node("local", Role::Replica, true, 1),
        node("remote-1", Role::Replica, false, 1),
        node("remote-2", Role::Replica, false, 1),
    ];
    let cluster = Cluster::new(
        nodes,
        settings(true, None, None),
        crate::Balance::RoundRobin.policy(),
    );
    let all_up = [
        Event::Identity(Some(1)),
        up(0, true, 1, 1),
        up(1, false, 1, 1),
        up(2, false, 1, 1),
        up(3, false, 1, 1),
        Event::Round,
    ];
    cluster.apply(&all_up);
    let pick = |tried: &[usize], free: bool| cluster.pick(&cluster.snapshot(), tried, None, free);
    // Well: always the local replica.
    for _ in 0..10 {
        assert_eq!(pick(&[], true), Some(1));
    }
    // Tried (it failed this read): the remote ones, in turn.
    let spilled: std::collections::HashSet<_> = (0..4).filter_map(|_| pick(&[1], true)).collect();
    assert_eq!(spilled, [2, 3].into());
    // Saturated (its one connection busy): a remote one with a free connection, but a
    // read that must wait waits for the local one.
    let local = Arc::clone(&cluster.snapshot().nodes[1]);
    let held = local.pool.acquire().await.unwrap();
    // A connection out of the pool but no call of ours on it (on its way back): not full.
    assert_eq!(pick(&[], true), Some(1));
    let busy = local.start_call();
    assert!(matches!(pick(&[], true), Some(2 | 3)));
    assert_eq!(pick(&[], false), Some(1));
    drop(busy);
    // Held by the application (a read-only transaction): full as well.
    local.lending.hold();
    assert!(matches!(pick(&[], true), Some(2 | 3)));
    drop(held);
    local.lending.returned();
    tokio::task::yield_now().await;
    // Down: the remote ones; back: the local one again.
    cluster.apply(&[down(1), Event::Round]);
    assert!(matches!(pick(&[], true), Some(2 | 3)));
    // (Once its ban is over.)
    tokio::time::sleep(Duration::from_millis(450)).await;
    cluster.apply(&all_up);
    assert_eq!(
        pick(&[], true),
        Some(1),
        "{:?}",
        cluster.snapshot().view.readable
    );
    // Without a preferred zone every node is local: plain round robin.
    let nodes = vec![
        node("primary", Role::Primary, true, 1),
        node("a", Role::Replica, true, 1),
        node("b", Role::Replica, true, 1),
    ];
    let cluster = Cluster::new(
        nodes,
        settings(true, None, None),
        crate::Balance::RoundRobin.policy(),
    );
    cluster.apply(&all_up[..4]);
    cluster.apply(&[Event::Round]);
    let picked: std::collections::HashSet<_> = (0..4)
        .filter_map(|_| cluster.pick(&cluster.snapshot(), &[], None, true))
        .collect();
    assert_eq!(picked, [1, 2].into());
}
