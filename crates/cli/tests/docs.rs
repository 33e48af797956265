//! The documents a newcomer reads stay true: every path ARCHITECTURE.md names
//! exists, and the README's quick start commands are the ones that work.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap()
}

/// Backquoted words that look like repository paths.
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            !s.contains(' ')
                && (s.starts_with("crates/")
                    || s.starts_with("catalog/")
                    || s.starts_with("examples/"))
        })
        .map(|s| s.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn every_path_architecture_md_names_exists() {
    let paths = named_paths(&read("ARCHITECTURE.md"));
    assert!(paths.len() > 10, "the code map names paths: {paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| !repo().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn readme_paths_exist() {
    let missing: Vec<String> = named_paths(&read("README.md"))
        .into_iter()
        .filter(|p| !repo().join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "README.md names paths that do not exist: {missing:?}"
    );
}

/// The `sh` blocks of the README's quick start: the main command and the
/// test command.
pub fn quick_start_commands() -> Vec<String> {
    let readme = read("README.md");
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .expect("a quick start section");
    let quick = quick.split("\n## ").next().unwrap_or("");
    quick
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or("").trim().to_string())
        .collect()
}

#[test]
fn the_quick_start_is_one_main_command_and_the_test_command() {
    let blocks = quick_start_commands();
    assert_eq!(
        blocks.len(),
        2,
        "one command runs the main job, one runs the tests: {blocks:?}"
    );
    // The server's lifecycle test runs the main command's arguments.
    assert!(
        blocks[0].starts_with("cargo run --bin rampart-server -- "),
        "{}",
        blocks[0]
    );
    assert_eq!(blocks[1], "cargo test");
}

#[test]
fn the_readme_offline_plan_runs_as_written() {
    let readme = read("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("rampart plan examples/fleet"))
        .expect("an offline plan example");
    let args: Vec<&str> = line
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(&args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("conflict"));
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim().starts_with("cargo test")),
        ".ci/run must call the README's test command"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["plan", "--help"],
        &["catalog", "list", "--help"],
        &["catalog", "show", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}
