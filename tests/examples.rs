//! Every example a newcomer may paste: the `engine …` command lines and `curl -d` bodies in
//! every `--help` text (all subcommands, found by walking `Commands:`), and the fenced code
//! blocks of README.md and sdk/README.md. Commands must parse (`ENGINE_PARSE_ONLY=1`
//! makes the binary stop after clap has accepted its arguments, so nothing runs), JSON
//! blocks and bodies must parse as JSON (or JSON Lines), and TOML blocks as TOML.
//!
//! A block that cannot be checked (placeholders that are not valid syntax) is marked by
//! the line `<!-- examples: not checked, REASON -->` just above its fence; the test prints
//! every such block with its reason, so none is skipped silently.

use std::path::Path;
use std::process::Command;

use crate::util::root;

/// One example and where it was found, for the failure message.
#[derive(Debug)]
struct Example {
    origin: String,
    kind: Kind,
    text: String,
}

#[derive(Debug, PartialEq)]
enum Kind {
    Command,
    Json,
    JsonLines,
    Toml,
}

/// `engine ARGS --help` with lines long enough that clap does not wrap an example.
fn help(path: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(path)
        .arg("--help")
        .env("COLUMNS", "1000")
        .output()
        .expect("running engine --help");
    assert!(output.status.success(), "engine {} --help failed", path.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

/// The subcommand names under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_whitespace().next()))
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The examples in one help text: lines that start with `engine `, cut before the
/// description (two or more spaces), and the bodies of `curl … -d '…'` lines.
fn help_examples(path: &[String], text: &str, out: &mut Vec<Example>) {
    let origin = format!("engine {} --help", path.join(" ")).replace("  ", " ");
    for line in text.lines().map(str::trim) {
        if line.starts_with("engine ") {
            let command = line.split("  ").next().unwrap_or(line);
            out.push(Example { origin: origin.clone(), kind: Kind::Command, text: command.to_owned() });
        } else if line.starts_with("curl ") {
            let words = shell_words(line);
            if let Some(i) = words.iter().position(|w| w == "-d" || w == "--data") {
                let body = words.get(i + 1).cloned().unwrap_or_default();
                out.push(Example { origin: origin.clone(), kind: Kind::Json, text: body });
            }
        }
    }
}

/// Splits a shell line into words (single and double quotes, backslash escapes), stopping
/// at an unquoted `|`, `>`, `<`, `;`, `&&` or `#`: what follows is another command, a
/// redirection or a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '|' | '>' | '<' | ';' => break,
            '&' if chars.peek() == Some(&'&') => break,
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The fenced blocks of a Markdown file, as examples; `skipped` collects the marked ones.
fn markdown_examples(path: &Path, out: &mut Vec<Example>, skipped: &mut Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i + 1;
        let end = (start..lines.len()).find(|&j| lines[j].starts_with("```")).expect("closed fence");
        let body = lines[start..end].join("\n");
        let origin = format!("{name}:{start}");
        let marker = i.checked_sub(1).and_then(|j| lines[j].trim().strip_prefix("<!-- examples: not checked"));
        i = end + 1;
        if let Some(reason) = marker {
            skipped.push(format!("{origin} ({info}){}", reason.trim_end_matches("-->").trim_end()));
            continue;
        }
        match info.trim() {
            "json" => {
                let kind =
                    if serde_json::from_str::<serde_json::Value>(&body).is_ok() { Kind::Json } else { Kind::JsonLines };
                out.push(Example { origin, kind, text: body });
            }
            "toml" => out.push(Example { origin, kind: Kind::Toml, text: body }),
            "sh" | "bash" | "console" | "shell" => {
                for (k, line) in body.lines().enumerate() {
                    let line = line.trim().trim_start_matches("$ ");
                    if line.starts_with("engine ") {
                        let origin = format!("{name}:{}", start + k + 1);
                        out.push(Example { origin, kind: Kind::Command, text: line.to_owned() });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Why an example does not parse, or `None`.
fn check(example: &Example) -> Option<String> {
    match example.kind {
        Kind::Json => serde_json::from_str::<serde_json::Value>(&example.text).err().map(|e| e.to_string()),
        Kind::JsonLines => example
            .text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).err().map(|e| format!("{e}: {l}"))),
        Kind::Toml => toml::from_str::<toml::Table>(&example.text).err().map(|e| e.to_string()),
        Kind::Command => {
            let words = shell_words(&example.text);
            let output = Command::new(env!("CARGO_BIN_EXE_engine"))
                .args(&words[1..])
                .env("ENGINE_PARSE_ONLY", "1")
                .output()
                .expect("running engine");
            let err = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            (!output.status.success()).then_some(err)
        }
    }
}

#[test]
fn shell_words_splits_like_a_shell() {
    assert_eq!(shell_words("engine a 'b c' \"d\\\"e\" f\\ g | head"), ["engine", "a", "b c", "d\"e", "f g"]);
    assert_eq!(shell_words("engine x --json > out.json"), ["engine", "x", "--json"]);
    assert_eq!(shell_words("engine rules verify  # pins"), ["engine", "rules", "verify"]);
}

#[test]
fn every_documented_example_parses() {
    let mut examples = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut helps = 0;
    while let Some(path) = queue.pop() {
        let text = help(&path);
        helps += 1;
        help_examples(&path, &text, &mut examples);
        for name in subcommands(&text) {
            queue.push([path.clone(), vec![name]].concat());
        }
    }
    let mut skipped = Vec::new();
    for file in ["README.md", "sdk/README.md"] {
        markdown_examples(&root().join(file), &mut examples, &mut skipped);
    }
    for s in &skipped {
        eprintln!("not checked: {s}");
    }
    let count = |kind: Kind| examples.iter().filter(|e| e.kind == kind).count();
    eprintln!(
        "checking {} examples from {helps} help texts and 2 READMEs: {} commands, {} JSON, {} JSON Lines, {} TOML",
        examples.len(),
        count(Kind::Command),
        count(Kind::Json),
        count(Kind::JsonLines),
        count(Kind::Toml)
    );
    // The walk must have found the nested commands and the READMEs' blocks, or it checks nothing.
    assert!(helps >= 25, "only {helps} help texts");
    assert!(count(Kind::Command) >= 25 && count(Kind::Json) >= 4 && count(Kind::Toml) >= 8, "{examples:#?}");
    let failures: Vec<String> =
        examples.iter().filter_map(|e| check(e).map(|why| format!("{}: {}\n    {why}", e.origin, e.text))).collect();
    assert!(failures.is_empty(), "{} examples do not parse:\n{}", failures.len(), failures.join("\n"));
}
