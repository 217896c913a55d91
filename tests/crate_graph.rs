//! The product links only what runs in production: the dev broker (`stan-testkit`) is a dev-dependency, and no
//! crate of this workspace runs protoc when the service is built (stan-proto ships its generated code).
//! Asked of `cargo tree`, run with the cargo that runs these tests.

use std::path::Path;
use std::process::Command;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// One package of a `cargo tree --prefix depth --format {p}` listing.
struct Node {
    depth: usize,
    package: String,
}

/// The service's dependency graph over the given edge kinds, one node per line, in `cargo tree` order.
fn service_tree(edges: &str) -> Vec<Node> {
    let output = Command::new(env!("CARGO"))
        .current_dir(MANIFEST_DIR)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "order-service",
            "-e",
            edges,
        ])
        .args(["--prefix", "depth", "--format", "{p}"])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let nodes: Vec<Node> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let digits = line.find(|c: char| !c.is_ascii_digit())?;
            Some(Node {
                depth: line[..digits].parse().ok()?,
                package: line[digits..].to_owned(),
            })
        })
        .collect();
    // Without the service and its protocol crate the listing is not the graph this test means to check.
    assert!(
        nodes.iter().any(|node| is(node, "order-service"))
            && nodes.iter().any(|node| is(node, "stan-proto")),
        "cargo tree did not list the service's graph"
    );
    nodes
}

fn is(node: &Node, name: &str) -> bool {
    node.package.starts_with(&format!("{name} v"))
}

fn is_workspace_crate(node: &Node) -> bool {
    let root = Path::new(MANIFEST_DIR).display().to_string();
    node.package.contains(&format!("({root}"))
}

#[test]
fn the_service_does_not_depend_on_the_dev_broker() {
    // Act
    let nodes = service_tree("normal");

    // Assert
    let broker: Vec<&str> = nodes
        .iter()
        .filter(|node| is(node, "stan-testkit"))
        .map(|node| node.package.as_str())
        .collect();
    assert!(
        broker.is_empty(),
        "the service's normal dependencies list {broker:?}"
    );
}

#[test]
fn building_the_service_compiles_neither_the_dev_broker_nor_a_protoc_step_of_ours() {
    // Act
    let nodes = service_tree("normal,build");

    // Assert
    let mut parents: Vec<&Node> = Vec::new();
    let mut offending = Vec::new();
    for node in &nodes {
        parents.truncate(node.depth);
        let parent = parents.last();
        if is(node, "stan-testkit") || is(node, "protoc-bin-vendored") {
            offending.push(node.package.clone());
        }
        // ratsio generates its own messages at build time; that one is not ours to remove.
        if is(node, "prost-build") && parent.is_some_and(|parent| is_workspace_crate(parent)) {
            offending.push(format!(
                "{} (build-dependency of {})",
                node.package,
                parent.map_or("", |p| &p.package)
            ));
        }
        parents.push(node);
    }
    assert!(
        offending.is_empty(),
        "a service build compiles {offending:?}"
    );
}
