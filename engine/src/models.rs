//! Where the commands that need a model find it when none is named on the command line.
//!
//! Every job file names its models relative to itself (`[train] encoder`, `[judge] model`),
//! so that a job runs the same from any working directory. `engine train` and
//! `engine adapter train` follow the same rule: a `--backbone`/`--encoder` flag is taken as
//! given (relative to the working directory, like any path on a command line); otherwise
//! `--config JOB` supplies `[train] encoder`, resolved relative to JOB, or the embedded
//! default resolved relative to JOB; without either, the default is resolved relative to
//! the working directory, which is where the default `rules.toml` of the other commands
//! lives. A model that is not there is an error that says which flag or key to set, and
//! that `scripts/setup.sh` downloads the embedded models.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::report::{DEFAULT_ENCODER, RawTrain};

/// Where a model path came from, so that the error for a missing model can say what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A command-line flag, e.g. `--backbone`.
    Flag(&'static str),
    /// A key of a job file, e.g. `[train] encoder` at `job.toml:12`.
    Key { file: PathBuf, line: usize, key: &'static str },
    /// The embedded default, resolved relative to `base` (a job file's folder, or the
    /// working directory when no job file was given).
    Default { job: Option<PathBuf> },
}

/// A resolved model path and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPath {
    pub path: PathBuf,
    pub source: ModelSource,
}

/// A model path that does not exist, or a job file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelPathError {
    #[error("{}", MissingMessage(.0, .1))]
    Missing(ModelPath, &'static str),
    #[error("{file}: {message}")]
    Job { file: String, message: String },
}

struct MissingMessage<'a>(&'a ModelPath, &'static str);

impl fmt::Display for MissingMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (model, flag) = (self.0, self.1);
        let path = model.path.display();
        let setup = "or run scripts/setup.sh in the repository to download the embedded models";
        match &model.source {
            ModelSource::Flag(name) => {
                write!(f, "{name} {path}: no such file or folder; check the path (relative to the working directory)")
            }
            ModelSource::Key { file, line, key } => write!(
                f,
                "{}:{line}: {key}: {path} not found; set {key} in {} (relative to that file), or pass {flag} DIR, {setup}",
                file.display(),
                file.display()
            ),
            ModelSource::Default { job: Some(job) } => write!(
                f,
                "the default model {path} (relative to the job file {}) is not there; set [train] encoder in {}, \
                 or pass {flag} DIR, {setup}",
                job.display(),
                job.display()
            ),
            ModelSource::Default { job: None } => {
                let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
                write!(
                    f,
                    "the default model {path} (relative to the working directory {cwd}) is not there; pass {flag} DIR, \
                     or --config JOB.toml to use its [train] encoder (relative to the job file), {setup}"
                )
            }
        }
    }
}

/// Only `[train]` of a job file; the other tables belong to other commands and are not
/// read (a job whose judge model is not downloaded can still name the reward model's encoder).
#[derive(Deserialize)]
struct TrainOnly {
    #[serde(default)]
    train: RawTrain,
}

/// The encoder (`[train] encoder`) for `flag` (`--backbone`, `--encoder`): the flag's value
/// if given, else the job file's key or default resolved relative to it, else the default
/// relative to the working directory. Fails, naming what to set, when the path does not exist.
pub fn encoder(flag: &'static str, given: Option<&Path>, job: Option<&Path>) -> Result<ModelPath, ModelPathError> {
    let model = match (given, job) {
        (Some(path), _) => ModelPath { path: path.to_path_buf(), source: ModelSource::Flag(flag) },
        (None, Some(job)) => {
            let text = crate::fsio::read_to_string(job)
                .map_err(|e| ModelPathError::Job { file: job.display().to_string(), message: e.to_string() })?;
            let raw: TrainOnly = toml::from_str(&text).map_err(|e| {
                let line = e.span().map_or(1, |s| line_of(&text, s.start));
                ModelPathError::Job { file: format!("{}:{line}", job.display()), message: e.message().to_owned() }
            })?;
            let base = job.parent().unwrap_or(Path::new(""));
            match raw.train.encoder {
                Some(key) => {
                    let line = line_of(&text, key.span().start);
                    let source = ModelSource::Key { file: job.to_path_buf(), line, key: "[train] encoder" };
                    ModelPath { path: base.join(key.get_ref()), source }
                }
                None => ModelPath {
                    path: base.join(DEFAULT_ENCODER),
                    source: ModelSource::Default { job: Some(job.to_path_buf()) },
                },
            }
        }
        (None, None) => ModelPath { path: PathBuf::from(DEFAULT_ENCODER), source: ModelSource::Default { job: None } },
    };
    if model.path.exists() { Ok(model) } else { Err(ModelPathError::Missing(model, flag)) }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_wins_then_the_job_key_then_the_default_beside_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let enc = dir.path().join("enc");
        std::fs::create_dir(&enc).unwrap();
        let job = dir.path().join("job.toml");
        std::fs::write(&job, "[job]\ninput = \"x\"\n\n[train]\nencoder = \"enc\"\n").unwrap();
        let found = encoder("--backbone", None, Some(&job)).unwrap();
        assert_eq!(found.path, enc);
        assert_eq!(found.source, ModelSource::Key { file: job.clone(), line: 5, key: "[train] encoder" });
        assert_eq!(encoder("--backbone", Some(&enc), Some(&job)).unwrap().source, ModelSource::Flag("--backbone"));

        std::fs::write(&job, "[train]\nencoder = \"nowhere\"\n").unwrap();
        let err = encoder("--backbone", None, Some(&job)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: [train] encoder: ", job.display())), "{err}");
        assert!(err.contains("--backbone DIR") && err.contains("scripts/setup.sh"), "{err}");

        std::fs::write(&job, "[train]\nepochs = 1\n").unwrap();
        let err = encoder("--encoder", None, Some(&job)).unwrap_err().to_string();
        assert!(err.contains(&dir.path().join(DEFAULT_ENCODER).display().to_string()), "{err}");
        assert!(err.contains("set [train] encoder in") && err.contains("--encoder DIR"), "{err}");

        std::fs::write(&job, "[train]\nencoders = 1\n").unwrap();
        let err = encoder("--encoder", None, Some(&job)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: unknown field `encoders`", job.display())), "{err}");
    }
}
