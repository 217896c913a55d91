//! README's configuration table is the users' list of settings: every environment variable that `--help` names
//! (the service's and each subcommand's) must have a row in it, so a new setting cannot ship undocumented.

use std::collections::BTreeSet;
use std::process::Command;

const README: &str = include_str!("../README.md");

/// The environment variables a `--help` text names, as `[env: NAME=...]` or `[env: NAME]`.
fn env_vars_in_help(args: &[&str]) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args(args)
        .output()
        .expect("the order-service binary runs");
    assert!(output.status.success(), "order-service {args:?} failed");
    let help = String::from_utf8(output.stdout).expect("--help is UTF-8");
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The names in backquotes on the rows of README's configuration table.
fn settings_in_readme() -> BTreeSet<String> {
    let section = README
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with('|'))
        .flat_map(|line| line.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

#[test]
fn every_setting_in_help_has_a_row_in_the_readme_configuration_table() {
    let documented = settings_in_readme();
    let mut missing = Vec::new();
    for command in [&["--help"][..], &["replay", "--help"][..]] {
        let named = env_vars_in_help(command);
        assert!(
            named.len() >= if command.len() == 1 { 20 } else { 1 },
            "`order-service {command:?}` names too few settings to be read right: {named:?}"
        );
        missing.extend(named.difference(&documented).cloned());
    }
    assert!(
        missing.is_empty(),
        "settings in --help without a row in README's configuration table: {missing:?}"
    );
}
