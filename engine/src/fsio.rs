//! Files the engine reads and writes, done one way everywhere:
//!
//! - [`write_atomic`]: every output file is replaced atomically and durably (a temporary
//!   file in the same folder, fsynced, renamed over the target, then the folder fsynced),
//!   so a crash or `kill -9` leaves the old file or the new one, never a mix or an empty
//!   file, and the rename survives a power cut.
//! - [`read`] / [`read_to_string`]: a file named by a config or a flag (a rule pack, a key,
//!   a pack's config file, rules.toml itself) is read whole only when it is a regular file
//!   of at most [`MAX_FILE_BYTES`]. Without that check `path = "/dev/zero"` (or a FIFO, or a
//!   10 GB file named by mistake) makes the engine read until memory runs out.
//! - [`refuse_overwriting_inputs`]: a command never writes its output over one of its
//!   inputs (`engine score --input P --out P` would otherwise replace the pairs with
//!   scores). Paths are compared after resolving `..` and symlinks.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The largest file read whole from a config path: 64 MiB. Rule packs, keys, indexes,
/// lock files and configs are far smaller (the bundled packs are under 1 MiB); data files
/// are streamed line by line instead (see [`MAX_LINE_BYTES`]).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The longest line of a JSON Lines data file: 64 MiB. A line is one record (a pair, a
/// score, a label), so anything longer is not a record but a runaway file such as
/// `/dev/zero`; reading stops there instead of filling memory.
pub const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads `path` whole, if it is a regular file of at most [`MAX_FILE_BYTES`].
///
/// The error for a device, FIFO, folder or oversized file has kind `InvalidData` and says
/// what was wrong; callers wrap it with the path as for any other I/O error.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    read_capped(path, MAX_FILE_BYTES)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// [`read`] with another size limit.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid(format!(
            "not a regular file (a device, FIFO or folder); refusing to read it — name a file instead (the engine reads at most {} MiB from such paths)",
            limit / (1024 * 1024)
        )));
    }
    if meta.len() > limit {
        return Err(too_big(meta.len(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the check and the read: never read more than the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn too_big(len: u64, limit: u64) -> std::io::Error {
    invalid(format!(
        "is {len} bytes, more than the {} MiB the engine reads from one file; is this the right file?",
        limit / (1024 * 1024)
    ))
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Reads one line (up to and including `\n`) into `line`, at most [`MAX_LINE_BYTES`] of it.
/// Returns the bytes read (0 at the end of the input); a longer line is an `InvalidData`
/// error rather than an unbounded allocation.
pub fn read_line_capped(reader: &mut impl std::io::BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let n = reader.by_ref().take(MAX_LINE_BYTES + 1).read_until(b'\n', line)?;
    if n as u64 > MAX_LINE_BYTES {
        return Err(invalid(format!(
            "a line longer than {} MiB; this is not a JSON Lines file of records",
            MAX_LINE_BYTES / (1024 * 1024)
        )));
    }
    Ok(n)
}

/// Replaces `path` with `bytes` atomically and durably, creating its folder if needed:
/// writes a temporary file beside it, fsyncs it, renames it over `path` and fsyncs the
/// folder. A reader sees the old file or the new one, never a mix; after a crash the file
/// is one of the two, never empty.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".engine-").suffix(".tmp").tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

/// Renames a finished temporary file over `path` durably: fsyncs the file, renames it and
/// fsyncs the folder. For outputs too large to build in memory (model weights), written to
/// `tmp` first and then put in place by this.
pub fn persist(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)?;
    sync_dir(&parent_of(path))
}

/// Makes a rename in `dir` durable. (On platforms where a folder cannot be opened for
/// fsync this is a no-op.)
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A command was asked to write its output over one of its inputs.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to write {what} {}: it is, or holds, the {input_what} {}; pass another output path (nothing was written)",
    output.display(),
    input.display()
)]
pub struct SameFileError {
    /// Which output, e.g. "--out".
    pub what: String,
    pub output: PathBuf,
    /// Which input, e.g. "--input".
    pub input_what: String,
    pub input: PathBuf,
}

/// Fails when `output` is the same file as one of `inputs` (given as `(flag, path)`),
/// comparing paths with `..`, `.` and symlinks resolved. An output that does not exist yet
/// is resolved through its folder (which may not exist either: then it is new and cannot
/// be an input).
pub fn refuse_overwriting_inputs(output: (&str, &Path), inputs: &[(&str, &Path)]) -> Result<(), SameFileError> {
    let (what, out) = output;
    let Some(resolved_out) = resolve(out) else { return Ok(()) };
    for &(input_what, input) in inputs {
        if resolve(input).is_some_and(|r| r == resolved_out) {
            return Err(SameFileError {
                what: what.to_string(),
                output: out.to_path_buf(),
                input_what: input_what.to_string(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Fails when the output folder `dir` (of `engine train`, `engine adapter train`) is one of
/// `inputs` or holds one: the command writes files of fixed names there (config.json,
/// tokenizer.json, checkpoints…), so `--out` equal to `--backbone`, or a `--data` file
/// inside `--out`, could be overwritten. Compared with symlinks resolved.
pub fn refuse_output_dir_over_inputs(output: (&str, &Path), inputs: &[(&str, &Path)]) -> Result<(), SameFileError> {
    let (what, dir) = output;
    let Some(resolved_dir) = resolve(dir) else { return Ok(()) };
    for &(input_what, input) in inputs {
        if resolve(input).is_some_and(|r| r.starts_with(&resolved_dir)) {
            return Err(SameFileError {
                what: what.to_string(),
                output: dir.to_path_buf(),
                input_what: input_what.to_string(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// `path` with symlinks, `.` and `..` resolved, as far as it exists: the file itself when
/// it exists, else its resolved folder joined with its name. `None` when neither exists.
fn resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let dir = parent_of(path);
    std::fs::canonicalize(dir).ok().map(|d| d.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_refuse_devices_folders_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read(dir.path()).unwrap_err().to_string().contains("not a regular file"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_capped(&big, 1024).unwrap_err().to_string();
        assert!(err.contains("2048 bytes"), "{err}");
        assert_eq!(read_capped(&big, 4096).unwrap().len(), 2048);
    }

    #[test]
    fn a_line_past_the_cap_is_an_error_not_an_allocation() {
        let mut zeros = std::io::BufReader::new(std::fs::File::open("/dev/zero").unwrap());
        let mut line = Vec::new();
        let err = read_line_capped(&mut zeros, &mut line).unwrap_err();
        assert!(err.to_string().contains("longer than 64 MiB"), "{err}");
        let mut two = std::io::Cursor::new(b"a\nb".to_vec());
        line.clear();
        assert_eq!(read_line_capped(&mut two, &mut line).unwrap(), 2);
        assert_eq!(line, b"a\n");
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.json"]);
    }

    #[test]
    fn an_output_that_resolves_to_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("pairs.jsonl");
        std::fs::write(&input, "x").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let dotted = dir.path().join("sub/../pairs.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for out in [&input, &link, &dotted] {
            let err = refuse_overwriting_inputs(("--out", out), &[("--input", &input)]).unwrap_err().to_string();
            assert!(err.contains("--out") && err.contains("--input") && err.contains("pairs.jsonl"), "{err}");
        }
        let out_dir = dir.path().join("rm");
        std::fs::create_dir(&out_dir).unwrap();
        let inside = out_dir.join("data.jsonl");
        std::fs::write(&inside, "x").unwrap();
        assert!(refuse_output_dir_over_inputs(("--out", &out_dir), &[("--backbone", &out_dir)]).is_err());
        assert!(refuse_output_dir_over_inputs(("--out", &out_dir), &[("--data", &inside)]).is_err());
        refuse_output_dir_over_inputs(("--out", &out_dir), &[("--data", &input)]).unwrap();
        let fresh = dir.path().join("scores.jsonl");
        refuse_overwriting_inputs(("--out", &fresh), &[("--input", &input)]).unwrap();
        refuse_overwriting_inputs(("--out", &dir.path().join("new/dir/x")), &[("--input", &input)]).unwrap();
    }
}
