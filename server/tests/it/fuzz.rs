//! Fuzzing the node's input paths with generated hostile input: tickets and
//! descriptors, every action and its body (hand-off bodies included), filter
//! text, and topology documents.
//!
//! Each target is a property run by proptest: bytes and structured values
//! (JSON that is nearly right, numbers at their limits, filters from a
//! grammar of valid and invalid expressions) go in, and the node must answer
//! with a protocol.md §4 code that blames the caller, never `Internal` or a dropped
//! connection, and must still serve afterwards. `cargo-fuzz` needs a nightly
//! toolchain and sanitizer builds of the whole dependency set, which CI does
//! not have, so the same properties run for a chosen time instead:
//!
//! ```text
//! QUIVER_FUZZ_SECONDS=600 cargo test --workspace --test it fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Without `QUIVER_FUZZ_SECONDS` each target runs one round of [`ROUND`]
//! cases (CI's short run). Rounds are seeded `QUIVER_FUZZ_SEED` (0) plus the
//! round number, so a failure names the seed that reproduces it.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quiver_protocol::{NodeInfo, SlotRange, Topology};
use quiver_server::RunningNode;
use tonic::Code;

use crate::common::*;

/// Cases per round.
const ROUND: u32 = 200;

fn budget() -> Duration {
    let seconds = std::env::var("QUIVER_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(seconds)
}

fn first_seed() -> u64 {
    std::env::var("QUIVER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs `test` on values of `strategy` in rounds until the budget is spent.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let started = Instant::now();
    let deadline = started + budget();
    let mut cases = 0u64;
    let mut seed = first_seed();
    loop {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases: ROUND,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed (QUIVER_FUZZ_SEED={seed} reproduces it): {e}");
        }
        cases += u64::from(ROUND);
        seed += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

/// A node over a local directory with one generated file, and a client, on
/// a runtime of their own: proptest's cases are synchronous.
struct Target {
    rt: tokio::runtime::Runtime,
    node: RunningNode,
    client: Mutex<arrow_flight::FlightClient>,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start() -> Target {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_parquet(&dir.path().join("t/a.parquet"), 3000, 5);
        let (node, client) = rt.block_on(async {
            let mut config = node_config(vec![local_source("local", dir.path())], None);
            config.limits.max_filter_len = 2048;
            let node = RunningNode::start(config).await.unwrap();
            let client = client(&node).await;
            (node, client)
        });
        Target {
            rt,
            node,
            client: Mutex::new(client),
            _dir: dir,
        }
    }

    fn call<T>(&self, f: impl AsyncFnOnce(&mut arrow_flight::FlightClient) -> T) -> T {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        self.rt.block_on(f(&mut client))
    }

    /// The node still answers a plain scan correctly.
    fn still_serves(&self) {
        let n = self
            .call(async |c| row_count(&do_get(c, &scan("local", "t/a.parquet")).await.unwrap()));
        assert_eq!(n, 3000);
    }

    fn stop(self) {
        self.rt.block_on(self.node.shutdown()).unwrap();
    }
}

/// The codes that say the request was wrong or cannot be served now; the
/// rest (`Internal`, `Unknown`, a dropped stream) would be the node's fault.
fn blames_the_caller(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::PermissionDenied
            | Code::Unimplemented
    )
}

fn check(outcome: Result<(), tonic::Status>, what: &dyn Debug) -> Result<(), TestCaseError> {
    match outcome {
        Err(s) if !blames_the_caller(&s) => Err(TestCaseError::fail(format!(
            "{what:?} was answered {:?}: {}",
            s.code(),
            s.message()
        ))),
        _ => Ok(()),
    }
}

/// Strings a hostile client would try for names and paths.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("t/a.parquet".to_string()),
        Just("t/".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("t/%2e%2e/x".to_string()),
        Just("t//a.parquet".to_string()),
        Just("t\\a.parquet".to_string()),
        Just("t/a.parquet\u{0}".to_string()),
        Just("x".repeat(5000)),
        Just("local".to_string()),
        Just("nope".to_string()),
        "[a-z/._%-]{0,40}",
        any::<String>(),
    ]
}

fn nasty_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(0)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!(0.5)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        nasty_number(),
        nasty_text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Filter text from a grammar that mixes real columns, unknown names,
/// literals at their limits, functions the node refuses and broken syntax.
fn filter_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        prop::sample::select(vec![
            "id", "qty", "price", "name", "day", "ts", "flag", "amount", "nope", "\"Id\"",
        ])
        .prop_map(String::from),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("9223372036854775808".to_string()),
        Just("1e400".to_string()),
        Just("NULL".to_string()),
        Just("TRUE".to_string()),
        Just("'it''s'".to_string()),
        Just("DATE '2019-02-30'".to_string()),
        Just("TIMESTAMP 'yesterday'".to_string()),
        Just("now()".to_string()),
        Just("random()".to_string()),
        Just("(SELECT 1)".to_string()),
        Just("'".to_string()),
        Just("(".to_string()),
        "[a-z0-9_ '()<>=!+*/%-]{0,12}",
    ];
    atom.prop_recursive(4, 24, 3, |inner| {
        let op = prop::sample::select(vec![
            "=", "<>", "<", ">=", "AND", "OR", "+", "-", "*", "/", "%", "LIKE", "||",
        ]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("{a} IS NULL")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|v| format!("qty IN ({})", v.join(", "))),
            (
                prop::sample::select(vec!["abs", "length", "upper", "sqrt", "cast_me", "sum"]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (
                inner,
                prop::sample::select(vec!["INT", "BIGINT", "DOUBLE", "VARCHAR", "DATE", "NOPE"])
            )
                .prop_map(|(a, t)| format!("CAST({a} AS {t})")),
        ]
    })
}

/// A ScanRequest as JSON, each field right, wrong or missing.
fn scan_json() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::option::of(nasty_text()),
        prop::option::of(nasty_text()),
        prop::option::of(nasty_text()),
        prop::option::of(prop::collection::vec(nasty_text(), 0..4)),
        prop::option::of(filter_text()),
        prop::option::of(nasty_number()),
        prop::option::of(nasty_text()),
        prop::option::of(json_value()),
    )
        .prop_map(|(source, path, url, columns, filter, limit, etag, extra)| {
            let mut m = serde_json::Map::new();
            let mut put = |k: &str, v: Option<serde_json::Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            };
            put("source", source.map(Into::into));
            put("path", path.map(Into::into));
            put("url", url.map(Into::into));
            put("columns", columns.map(Into::into));
            put("filter", filter.map(Into::into));
            put("limit", limit);
            put("etag", etag.map(Into::into));
            put("extra", extra);
            serde_json::Value::Object(m)
        })
}

/// Ticket or descriptor bytes: raw bytes, any JSON, or a near-valid request.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        scan_json().prop_map(|v| v.to_string().into_bytes()),
        scan_json().prop_map(|v| {
            // Valid JSON cut short, as a truncated message arrives.
            let text = v.to_string().into_bytes();
            text[..text.len() / 2].to_vec()
        }),
    ]
}

#[test]
fn fuzz_tickets_and_descriptors() {
    let target = Target::start();
    fuzz(
        "tickets",
        (request_bytes(), any::<bool>()),
        |(bytes, plan)| {
            let outcome = target.call(async |c| {
                if plan {
                    flight_info_raw(c, &bytes).await.map(|_| ())
                } else {
                    do_get_raw(c, &bytes).await.map(|_| ())
                }
            });
            check(outcome, &String::from_utf8_lossy(&bytes))
        },
    );
    target.still_serves();
    target.stop();
}

/// Bodies shaped like each action's, with hostile values.
fn action_body() -> impl Strategy<Value = serde_json::Value> {
    let object = (
        nasty_text(),
        nasty_text(),
        nasty_text(),
        nasty_number(),
        nasty_number(),
        nasty_number(),
        prop::collection::vec(nasty_number(), 0..80),
    )
        .prop_map(|(source, path, etag, size, modified, chunk, chunks)| {
            serde_json::json!({
                "source": source, "path": path, "etag": etag, "size": size,
                "last_modified_ms": modified, "chunk_size": chunk, "chunks": chunks,
            })
        });
    prop_oneof![
        json_value(),
        scan_json(),
        (object, prop::collection::vec(nasty_number(), 0..80))
            .prop_map(|(object, chunks)| serde_json::json!({"object": object, "chunks": chunks})),
        prop::collection::vec((nasty_number(), nasty_number()), 0..20)
            .prop_map(|slots| serde_json::json!({ "slots": slots })),
        (nasty_number(), json_value()).prop_map(|(expected, topology)| {
            serde_json::json!({"expected_epoch": expected, "topology": topology})
        }),
        (nasty_text(), nasty_text())
            .prop_map(|(source, path)| serde_json::json!({"source": source, "path": path})),
        any::<bool>().prop_map(|refresh| serde_json::json!({ "refresh": refresh })),
    ]
}

#[test]
fn fuzz_actions_and_hand_off_bodies() {
    let target = Target::start();
    // Every action Quiver knows, two of Flight SQL's, and made-up names.
    let known: Vec<String> = quiver_protocol::ActionType::ALL
        .iter()
        .map(|a| a.name().to_string())
        .chain(["CreatePreparedStatement".into(), "CancelQuery".into()])
        .collect();
    let kinds = prop_oneof![prop::sample::select(known), nasty_text(),];
    let bodies = prop_oneof![
        action_body().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    fuzz("actions", (kinds, bodies), |(kind, body)| {
        let outcome = target.call(async |c| action(c, &kind, &body).await.map(|_| ()));
        check(outcome, &(kind.as_str(), String::from_utf8_lossy(&body)))
    });
    target.still_serves();
    target.stop();
}

#[test]
fn fuzz_filter_checking() {
    fuzz("filters", filter_text(), |filter| {
        // Text checks alone never panic, and refuse only with the caller's
        // codes.
        match quiver_server::scan::filter::check_text(&filter) {
            Ok(()) => Ok(()),
            Err(e) => {
                let status = tonic::Status::from(e);
                check(Err(status), &filter)
            }
        }
    });
    // Through the node, every filter is planned against the file's schema.
    let target = Target::start();
    fuzz("filters-on-a-node", filter_text(), |filter| {
        let req = quiver_protocol::ScanRequest {
            filter: Some(filter.clone()),
            ..scan("local", "t/a.parquet")
        };
        let outcome = target.call(async |c| do_get(c, &req).await.map(|_| ()));
        check(outcome, &filter)
    });
    target.still_serves();
    target.stop();
}

/// Topology documents whose every part may be wrong.
fn topology() -> impl Strategy<Value = Topology> {
    let id = prop::sample::select(vec!["n1", "n2", "n3", "n4", "", "n1 "]).prop_map(String::from);
    let url = prop::sample::select(vec![
        "grpc://127.0.0.1:5001",
        "grpc+tls://node:443",
        "http://[::1]:1",
        "ftp://x",
        "grpc://",
        "",
    ])
    .prop_map(String::from);
    let nodes = prop::collection::vec(
        (id.clone(), url).prop_map(|(id, url)| NodeInfo { id, url }),
        0..6,
    );
    let cuts = prop::collection::btree_set(0u16..16384, 0..6);
    let owners = prop::collection::vec(prop::collection::vec(id, 0..4), 7);
    (
        prop_oneof![
            Just(1u64),
            Just(u64::MAX),
            Just(quiver_protocol::MAX_EPOCH),
            any::<u64>()
        ],
        0usize..5,
        nodes,
        cuts,
        owners,
        any::<bool>(),
    )
        .prop_map(|(epoch, replication, nodes, cuts, owners, gap)| {
            // Ranges from the cut points, sometimes with a gap or overlap.
            let mut bounds: Vec<u16> = cuts.into_iter().collect();
            bounds.insert(0, 0);
            let mut slots = Vec::new();
            for (i, &start) in bounds.iter().enumerate() {
                let end = bounds
                    .get(i + 1)
                    .map(|&n| n.saturating_sub(1))
                    .unwrap_or(16383);
                let end = if gap { end.saturating_sub(1) } else { end };
                slots.push(SlotRange {
                    start,
                    end,
                    owners: owners[i % owners.len()].clone(),
                });
            }
            Topology {
                epoch,
                replication,
                nodes,
                slots,
            }
        })
}

#[test]
fn fuzz_topology_validation() {
    fuzz("topologies", topology(), |t| {
        let Ok(()) = t.validate() else {
            return Ok(());
        };
        // A valid document names owners for every slot, and every change
        // computed from it is valid or refused, never a panic.
        for slot in [0u16, 1, 8191, 16383] {
            prop_assert!(
                !t.owners(slot).is_empty(),
                "slot {slot} has no owner: {t:?}"
            );
        }
        let extra = NodeInfo {
            id: "n9".into(),
            url: "grpc://127.0.0.1:9".into(),
        };
        let changes = [t.with_node(extra), t.without_node("n1"), t.rebalance()];
        for changed in changes.into_iter().flatten() {
            prop_assert!(changed.validate().is_ok(), "{changed:?}");
            prop_assert!(changed.epoch > t.epoch);
        }
        let json = serde_json::to_vec(&t).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Topology>(&json).unwrap(), t);
        Ok(())
    });
}
