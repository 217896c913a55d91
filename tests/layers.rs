//! The crate's parts, and which may use which: each part imports only parts below it in `LAYERS`, so the
//! dependencies run one way and a change in a lower part never needs one above it. Read from the source text
//! (every `crate::<part>` outside a comment), so a new import that runs back up fails here, wherever it hides.
//!
//! `cargo test --test layers -- --nocapture` also prints the graph that `docs/architecture.md` shows.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// From the top down. Parts on one line are peers: neither may import the other.
const LAYERS: &[&[&str]] = &[
    &["app"],
    &["http"],
    &["replay"],
    &["actors"],
    &["cache"],
    &["storage", "transport"],
    &["telemetry"],
    &["config"],
    &["domain"],
];

/// How far from the top a part stands, if it is one of `LAYERS`.
fn rank(part: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&part))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The part a file of `src/` belongs to: its first folder, or its stem for a loose file.
fn part_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src/");
    let first = relative.components().next().expect("a path under src/");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The parts a source text names as `crate::<part>`, leaving out comments.
fn parts_used(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.push(name);
            }
            rest = after;
        }
    }
    used
}

/// (from part, to part) -> the files that make that arrow.
fn arrows() -> BTreeMap<(String, String), Vec<String>> {
    let src = Path::new(MANIFEST_DIR).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut arrows: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let from = part_of(&src, &file);
        // The binaries are outside the library's graph: they use it as any crate would.
        if from == "main" || from == "bin" || from == "lib" {
            continue;
        }
        let text = fs::read_to_string(&file).expect("a readable source file");
        for to in parts_used(&text) {
            if to != from {
                let shown = file
                    .strip_prefix(MANIFEST_DIR)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                let files = arrows.entry((from.clone(), to)).or_default();
                if !files.contains(&shown) {
                    files.push(shown);
                }
            }
        }
    }
    arrows
}

#[test]
fn every_part_of_the_crate_is_placed_in_a_layer() {
    let unplaced: Vec<String> = arrows()
        .keys()
        .flat_map(|(from, to)| [from.clone(), to.clone()])
        .filter(|part| rank(part).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "parts missing from LAYERS in tests/layers.rs: {unplaced:?}"
    );
}

#[test]
fn each_part_imports_only_parts_below_it() {
    let mut upward = Vec::new();
    for ((from, to), files) in arrows() {
        if let (Some(from_rank), Some(to_rank)) = (rank(&from), rank(&to)) {
            if to_rank <= from_rank {
                upward.push(format!("{from} -> {to} in {files:?}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up or sideways:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_graph_of_the_parts_is_printed_for_the_architecture_doc() {
    let arrows = arrows();
    assert!(
        arrows.contains_key(&("app".to_owned(), "http".to_owned())),
        "the wiring mounts the listeners; if it no longer does, this reader is broken"
    );
    println!("part -> the parts it imports");
    for layer in LAYERS {
        for part in *layer {
            let uses: Vec<&str> = arrows
                .keys()
                .filter(|(from, _)| from == part)
                .map(|(_, to)| to.as_str())
                .collect();
            println!("{part:<10} -> {}", uses.join(", "));
        }
    }
}
