//! JSON Lines outputs that a rerun resumes: [`resume`] keeps the records an earlier run
//! finished, drops the rest (a torn last line, lines that do not parse, records the caller
//! does not want), rewrites the file with only what it kept, and hands back the file open
//! for appending.
//!
//! `engine pairwise` resumes `pairwise.jsonl` this way. (`engine score` does not: its
//! output is canonical, so it keeps a valid *prefix* in place and parks records of another
//! layout for reuse; see [`crate::score`].)

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file [`resume`] could not read back, write or open.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct JsonlError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A resumed JSON Lines file: what an earlier run left that is kept, and the file, open
/// for appending after it.
#[derive(Debug)]
pub struct Resumed<K, T> {
    /// The kept records by key, each with its line as it was written (a number does not
    /// always survive a parse and a print bit for bit, so the line is what is kept).
    pub kept: BTreeMap<K, (T, String)>,
    path: PathBuf,
    file: File,
}

impl<K: Ord, T> Resumed<K, T> {
    /// Appends `line` (one JSON record, no newline) to the file and keeps it under `key`.
    pub fn append(&mut self, key: K, record: T, line: String) -> Result<(), JsonlError> {
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|source| JsonlError { path: self.path.clone(), source })?;
        self.kept.insert(key, (record, line));
        Ok(())
    }
}

/// Reads what an earlier run wrote to `path` (nothing when it does not exist) and keeps
/// each record for which `key` gives a key; of records with the same key, the last. Then
/// rewrites the file atomically ([`crate::fsio::write_atomic`]) with the kept lines in key
/// order, creating its folder if needed, and opens it for appending.
///
/// An unterminated last line is what a killed run leaves: it is dropped. Any other line
/// that is not a `T` means the file is not an output of ours (notes given as `--out` by
/// mistake): that is an error naming the file and line, and the file is left as it is.
pub fn resume<K: Ord, T: DeserializeOwned>(
    path: &Path,
    mut key: impl FnMut(&T) -> Option<K>,
) -> Result<Resumed<K, T>, JsonlError> {
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JsonlError { path, source }
    };
    let mut kept = BTreeMap::new();
    let text = match crate::fsio::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(error(path)(e)),
    };
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    for (number, line) in text[..complete].lines().enumerate() {
        let record = serde_json::from_str::<T>(line).map_err(|e| {
            error(path)(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "line {}: not a record of this command's output ({e}); refusing to overwrite the file — pass another --out",
                    number + 1
                ),
            ))
        })?;
        if let Some(k) = key(&record) {
            kept.insert(k, (record, line.to_string()));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(error(parent))?;
    }
    let mut text = String::new();
    for (_, line) in kept.values() {
        text.push_str(line);
        text.push('\n');
    }
    crate::fsio::write_atomic(path, text.as_bytes()).map_err(error(path))?;
    let file = std::fs::OpenOptions::new().append(true).open(path).map_err(error(path))?;
    Ok(Resumed { kept, path: path.to_path_buf(), file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Row {
        id: String,
        by: String,
    }

    fn mine(row: &Row) -> Option<String> {
        (row.by == "me").then(|| row.id.clone())
    }

    #[test]
    fn keeps_its_own_parsed_lines_as_written_in_key_order_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let lines = [
            r#"{"id":"c","by":"me","x":0.30000000000000004}"#,
            r#"{"id":"b","by":"someone else"}"#,
            r#"{"id":"a","by":"me"}"#,
            r#"{"id":"a", "by":"me", "again":true}"#,
            r#"{"id":"d","by":"m"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut resumed = resume(&path, mine).unwrap();
        let kept: Vec<(&String, &String)> = resumed.kept.iter().map(|(k, (_, line))| (k, line)).collect();
        assert_eq!(kept, [(&"a".to_string(), &lines[3].to_string()), (&"c".to_string(), &lines[0].to_string())]);
        assert_eq!(resumed.kept["a"].0, Row { id: "a".into(), by: "me".into() });
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n{}\n", lines[3], lines[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");

        let e = r#"{"id":"e","by":"me"}"#;
        resumed.append("e".into(), Row { id: "e".into(), by: "me".into() }, e.into()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n{}\n{e}\n", lines[3], lines[0]));
        assert!(resumed.kept.contains_key("e"));
    }

    #[test]
    fn a_missing_file_and_folder_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/out.jsonl");
        let resumed = resume(&path, mine).unwrap();
        assert!(resumed.kept.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_file_that_is_not_our_output_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        let notes = "my notes\nabout the run\n";
        std::fs::write(&path, notes).unwrap();
        let err = resume(&path, mine).unwrap_err().to_string();
        assert!(err.contains("notes.txt") && err.contains("line 1"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), notes);
    }
}
