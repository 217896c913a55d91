//! docker-compose.yml, checked without a Docker engine: Debian's docker-compose (scripts/compose.sh installs it)
//! validates the file, every profile's services included, against the Compose schema and resolves every reference
//! (`docker-compose config`), and the environment the file gives each instance of the service parses as the
//! service's own settings.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::{CommandFactory, Parser};
use order_service::config::Cli;
use serde_json::Value;

const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");

/// What `.env` must set (docker-compose.yml refuses to start without them), as `.env.example` lists them.
const REQUIRED_ENV: [(&str, &str); 4] = [
    ("POSTGRES_PASSWORD", "test-postgres-password"),
    ("NATS_PASSWORD", "test-nats-password"),
    ("ADMIN_TOKEN", "test-admin-token"),
    ("GRAFANA_ADMIN_PASSWORD", "test-grafana-password"),
];

/// Variables the service reads that are not settings of its command line.
const NOT_SETTINGS: [&str; 1] = ["RUST_LOG"];

#[test]
fn the_compose_file_is_valid_and_gives_each_instance_settings_the_service_accepts(
) -> anyhow::Result<()> {
    // Act: the whole file, every profile's services included (docker-compose 1.x resolves them all).
    let config = compose_config()?;

    // Assert: every service built from this repository (an instance) has an environment the service parses.
    let services = config["services"]
        .as_object()
        .context("no services in the resolved file")?;
    let instances: Vec<&String> = services
        .iter()
        .filter(|(_, service)| service.get("build").is_some())
        .map(|(name, _)| name)
        .collect();
    for expected in ["app", "replica", "cluster-app"] {
        assert!(
            instances.iter().any(|name| *name == expected),
            "{expected} is not an instance built from the repository: {instances:?}"
        );
    }
    for name in instances {
        let environment =
            environment(&services[name]).with_context(|| format!("service {name}"))?;
        parse_settings(&environment).with_context(|| format!("service {name}"))?;
    }
    Ok(())
}

#[test]
fn the_cluster_profile_gives_the_instances_every_node_and_both_postgresql_servers(
) -> anyhow::Result<()> {
    // Act
    let config = compose_config()?;
    let environment = environment(&config["services"]["cluster-app"])?;

    // Assert: the URL names both servers and asks for the one that takes writes; the NATS list names the three
    // nodes, which route to each other; the stream the instances create has a replica on each node.
    let database: tokio_postgres::Config = environment["DATABASE_URL"].parse()?;
    assert_eq!(database.get_hosts().len(), 2, "{database:?}");
    assert_eq!(
        database.get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    );
    let nodes = ["nats-1", "nats-2", "nats-3"];
    for node in nodes {
        assert!(
            environment["NATS_URL"].contains(&format!("nats://{node}:4222")),
            "NATS_URL misses {node}: {}",
            environment["NATS_URL"]
        );
        let command = config["services"][node]["command"]
            .as_array()
            .with_context(|| format!("{node} has no command"))?;
        let routes = command
            .iter()
            .skip_while(|arg| *arg != "--routes")
            .nth(1)
            .and_then(Value::as_str)
            .with_context(|| format!("{node} has no --routes"))?;
        for other in nodes {
            assert!(
                routes.contains(&format!("nats://{other}:6222")),
                "{node} does not route to {other}: {routes}"
            );
        }
    }
    assert_eq!(environment["JS_REPLICAS"], "3");
    Ok(())
}

/// The file as `docker-compose config` validates and resolves it, as JSON.
fn compose_config() -> anyhow::Result<Value> {
    let output = Command::new("docker-compose")
        .args(["-f", COMPOSE_FILE, "config"])
        .envs(REQUIRED_ENV)
        .output()
        .context("Failed to run docker-compose: run scripts/compose.sh to install it")?;
    anyhow::ensure!(
        output.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    yaml_to_json(&output.stdout)
}

/// YAML to JSON with PyYAML, which docker-compose itself is built on (so it is there wherever docker-compose is).
fn yaml_to_json(yaml: &[u8]) -> anyhow::Result<Value> {
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("Failed to run python3")?;
    python
        .stdin
        .take()
        .context("no stdin for python3")?
        .write_all(yaml)?;
    let output = python.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "python3 could not read docker-compose's output: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A service's environment, as a map (docker-compose writes it as one).
fn environment(service: &Value) -> anyhow::Result<BTreeMap<String, String>> {
    service["environment"]
        .as_object()
        .context("no environment")?
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Ok((key.clone(), value))
        })
        .collect()
}

/// Parses `environment` as the service would: each variable through the flag that has it as its `env`.
fn parse_settings(environment: &BTreeMap<String, String>) -> anyhow::Result<Cli> {
    let command = Cli::command();
    let flags: BTreeMap<String, String> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, format!("--{}", arg.get_long()?)))
        })
        .collect();
    let mut args = vec!["order-service".to_owned()];
    for (name, value) in environment {
        if NOT_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let flag = flags
            .get(name)
            .with_context(|| format!("{name} is not a setting of the service"))?;
        args.push(format!("{flag}={value}"));
    }
    Cli::try_parse_from(&args).with_context(|| format!("the service refuses {args:?}"))
}
