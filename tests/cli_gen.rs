//! Binary tests for the generated shell completions and man pages (`weft completions`,
//! `weft man`): they run the built `weft` and compare what it prints with the clap model in
//! `weft::cli`, so a new subcommand shows up everywhere or a test names the one it missed.
//!
//! If `man` is installed, every page must also render with `man --warnings -l` and print no
//! warning; without it that check is skipped with a note on stderr (install `man-db`).

mod common;

use common::TempDir;

use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;
use weft::cli::Cli;

fn weft(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("spawn weft");
    assert!(
        out.status.success(),
        "weft {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(weft(args).stdout).expect("utf-8 output")
}

/// Names of the subcommands `weft --help` shows.
fn visible_subcommands() -> Vec<String> {
    let cmd = Cli::command();
    let names: Vec<String> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_owned()).collect();
    for expected in ["run", "check-config", "keygen", "ca", "cert", "attach", "detach", "status"] {
        assert!(names.iter().any(|n| n == expected), "clap model lost `{expected}`: {names:?}");
    }
    names
}

/// `man --warnings -l` must render `page` and say nothing on stderr; `false` if no `man`.
fn man_renders_cleanly(page: &Path) -> bool {
    let out = match Command::new("man").arg("--warnings").arg("-l").arg(page).env("MANWIDTH", "80").output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => panic!("spawn man: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {}: {}\n{stderr}",
        page.display(),
        out.status
    );
    assert!(!out.stdout.is_empty(), "man -l {} rendered nothing", page.display());
    true
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let script = stdout(&["completions", "bash"]);
    assert!(script.contains("complete -F"), "not a bash completion script:\n{script}");
    for name in visible_subcommands() {
        assert!(script.contains(&name), "bash completion lacks `{name}`");
    }
    // Nested subcommands and options are completed too.
    for word in ["init", "sign", "show", "--netns", "--config"] {
        assert!(script.contains(word), "bash completion lacks `{word}`");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let zsh = stdout(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef weft"), "zsh script must start with #compdef:\n{zsh}");
    let fish = stdout(&["completions", "fish"]);
    assert!(fish.contains("complete -c weft"), "not a fish completion script:\n{fish}");
    for name in visible_subcommands() {
        assert!(zsh.contains(&name), "zsh completion lacks `{name}`");
        assert!(fish.contains(&name), "fish completion lacks `{name}`");
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["completions", "powershell"])
        .output()
        .expect("spawn weft");
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn generators_stay_out_of_the_main_help() {
    let help = stdout(&["--help"]);
    assert!(help.contains("attach"), "{help}");
    for hidden in ["completions ", "man "] {
        let listed = help.lines().any(|l| l.trim_start().starts_with(hidden));
        assert!(!listed, "`{hidden}` should be hidden from weft --help:\n{help}");
    }
    // ...but each documents itself.
    assert!(stdout(&["completions", "--help"]).contains("bash"));
    assert!(stdout(&["man", "--help"]).contains("--dir"));
}

#[test]
fn man_page_is_roff_listing_the_subcommands() {
    let page = stdout(&["man"]);
    let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap_or_else(|| panic!("no .TH line:\n{page}"));
    assert!(th.starts_with(".TH weft 1 "), "title should be weft(1): {th}");
    assert!(th.contains(env!("CARGO_PKG_VERSION")), "title should carry the version: {th}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "man page lacks `{section}`");
    }
    for name in visible_subcommands() {
        // roff escapes '-' as '\-'.
        let reference = format!("weft\\-{}(1)", name.replace('-', "\\-"));
        assert!(page.contains(&reference), "man page lacks `{reference}`");
    }
    assert!(!page.contains("completions"), "hidden subcommands stay out of the man page");
    assert!(!page.contains("weft\\-help"), "there is no weft-help(1) to refer to");

    let dir = TempDir::new("cli-gen", "stdout");
    let file = dir.0.join("weft.1");
    std::fs::write(&file, &page).expect("write weft.1");
    if !man_renders_cleanly(&file) {
        eprintln!("skipping the `man -l` rendering check: `man` is not installed (apt-get install man-db)");
    }
}

#[test]
fn man_dir_writes_a_page_for_every_referenced_subcommand() {
    let dir = TempDir::new("cli-gen", "dir");
    weft(&["man", "--dir", dir.0.to_str().expect("utf-8 temp path")]);
    let mut files: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("read man dir")
        .map(|e| e.expect("dir entry").file_name().into_string().expect("utf-8 name"))
        .collect();
    files.sort();

    let mut expected = vec!["weft.1".to_owned()];
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        expected.push(format!("weft-{}.1", sub.get_name()));
        for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            expected.push(format!("weft-{}-{}.1", sub.get_name(), nested.get_name()));
        }
    }
    expected.sort();
    assert_eq!(files, expected, "one page per visible (sub)subcommand, nothing else");

    // weft.1 in the directory is the page `weft man` prints.
    let main = std::fs::read_to_string(dir.0.join("weft.1")).expect("read weft.1");
    assert_eq!(main, stdout(&["man"]));
    let sign = std::fs::read_to_string(dir.0.join("weft-ca-sign.1")).expect("read weft-ca-sign.1");
    assert!(sign.contains(".TH weft\\-ca\\-sign 1 ") || sign.contains(".TH weft-ca-sign 1 "), "{sign}");
    assert!(sign.contains("\\-\\-public\\-key\\-file"), "options are documented:\n{sign}");

    let mut rendered = true;
    for file in &files {
        rendered &= man_renders_cleanly(&dir.0.join(file));
    }
    if !rendered {
        eprintln!("skipping the `man -l` rendering check: `man` is not installed (apt-get install man-db)");
    }
}

#[test]
fn man_dir_that_does_not_exist_is_an_error() {
    let dir = TempDir::new("cli-gen", "missing");
    let missing = dir.0.join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["man", "--dir"])
        .arg(&missing)
        .output()
        .expect("spawn weft");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writing man pages into") && stderr.contains("nope"), "{stderr}");
}
