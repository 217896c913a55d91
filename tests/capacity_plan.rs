//! The capacity plan (`docs/scaling.md`) and its calculator (`scripts/capacity.py`) agree, and the calculator's
//! counts move the right way. Needs python3 (standard library only); a missing python3 fails the test.

use std::path::Path;
use std::process::{Command, Output};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `python3 scripts/capacity.py ARGS` from the crate's root; panics with a clear message when python3 cannot
/// be started.
fn capacity(args: &[&str]) -> Output {
    let script = Path::new(MANIFEST_DIR).join("scripts/capacity.py");
    assert!(script.is_file(), "{} is missing", script.display());
    match Command::new("python3")
        .current_dir(MANIFEST_DIR)
        .arg(&script)
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!(
            "could not run python3 ({error}): this test needs python3 (3.11, standard library only) on PATH \
             to run scripts/capacity.py"
        ),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The counts for one target, from `--json`.
#[derive(Debug, Clone)]
struct Plan {
    shards: u64,
    primaries: u64,
    instances_per_shard: u64,
    instances: u64,
    nats_nodes: u64,
    cache_bytes_per_instance: u64,
}

fn plan(orders_per_sec: u64, stored_orders: u64, get_per_sec: u64) -> Plan {
    let args = [
        "--orders-per-sec".to_string(),
        orders_per_sec.to_string(),
        "--stored-orders".to_string(),
        stored_orders.to_string(),
        "--get-per-sec".to_string(),
        get_per_sec.to_string(),
        "--json".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = capacity(&args);
    assert!(
        output.status.success(),
        "capacity.py failed\n{}",
        describe(&output)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("--json printed no JSON ({error})\n{}", describe(&output)));
    let field = |name: &str| {
        value[name]
            .as_u64()
            .unwrap_or_else(|| panic!("--json has no integer {name:?}\n{}", describe(&output)))
    };
    Plan {
        shards: field("shards"),
        primaries: field("primaries"),
        instances_per_shard: field("instances_per_shard"),
        instances: field("instances"),
        nats_nodes: field("nats_nodes"),
        cache_bytes_per_instance: field("cache_bytes_per_instance"),
    }
}

#[test]
fn every_worked_example_in_the_plan_matches_the_calculator() {
    let output = capacity(&["--check", "docs/scaling.md"]);
    assert!(
        output.status.success(),
        "docs/scaling.md and scripts/capacity.py disagree\n{}",
        describe(&output)
    );
}

#[test]
fn the_counts_are_consistent_and_never_fall_as_the_target_grows() {
    let base = plan(20_000, 1_000_000, 20_000);
    let mut previous = base.clone();
    for factor in [2u64, 4, 8, 16, 64, 256, 1024] {
        let next = plan(20_000 * factor, 1_000_000, 20_000);
        for p in [&previous, &next] {
            assert!(
                p.shards >= 1 && p.instances_per_shard >= 1 && p.nats_nodes >= 1,
                "{p:?}"
            );
            assert_eq!(p.primaries, p.shards, "one primary per shard: {p:?}");
            assert_eq!(p.instances, p.shards * p.instances_per_shard, "{p:?}");
        }
        assert!(
            next.instances >= previous.instances,
            "doubling orders/s lowered the instance count: {previous:?} -> {next:?}"
        );
        assert!(next.shards >= previous.shards, "{previous:?} -> {next:?}");
        assert!(
            next.nats_nodes >= previous.nats_nodes,
            "{previous:?} -> {next:?}"
        );
        previous = next;
    }
    // More GETs never need fewer instances; more stored orders never need less cache per instance.
    let more_gets = plan(20_000, 1_000_000, 40_000);
    assert!(
        more_gets.instances >= base.instances,
        "{base:?} -> {more_gets:?}"
    );
    let more_stored = plan(20_000, 2_000_000, 20_000);
    assert!(
        more_stored.cache_bytes_per_instance >= base.cache_bytes_per_instance,
        "{base:?} -> {more_stored:?}"
    );
}
