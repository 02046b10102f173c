//! `[train]` and `[eval]` in rules.toml: the reward-model stages of `engine run`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// `[train]` as written. Every key is optional; see [`TrainSettings`] for the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    pub encoder: Option<Spanned<String>>,
    pub epochs: Option<Spanned<usize>>,
    pub batch_size: Option<Spanned<usize>>,
    pub learning_rate: Option<Spanned<f64>>,
    pub max_len: Option<Spanned<usize>>,
    pub seed: Option<u64>,
    pub margin: Option<bool>,
    pub center_coef: Option<Spanned<f64>>,
    pub checkpoint_every: Option<Spanned<usize>>,
}

/// `[eval]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEval {
    pub holdout: Option<Spanned<f64>>,
    #[serde(default)]
    pub data: Vec<Spanned<String>>,
    pub seed: Option<u64>,
}

/// The reward model `engine run` trains.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainSettings {
    /// The backbone: a BERT folder (default: the embedded all-MiniLM-L6-v2).
    pub encoder: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub max_len: usize,
    pub seed: u64,
    /// Use each label's normalised margin in the Bradley-Terry loss.
    pub margin: bool,
    pub center_coef: f64,
    pub checkpoint_every: usize,
}

/// How `engine run` evaluates the reward model.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalSettings {
    /// Share of the job's pairs kept out of training and evaluated against their gold
    /// labels (pairs without gold labels are never held out).
    pub holdout: f64,
    /// Further gold-labelled files to evaluate on.
    pub data: Vec<PathBuf>,
    pub seed: u64,
}

/// Both sections, validated.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunSettings {
    pub train: TrainSettings,
    pub eval: EvalSettings,
}

impl RunSettings {
    /// Validates the sections; `at` locates an error in rules.toml, `resolve` makes a path
    /// relative to it.
    pub fn from_raw<E>(
        train: &RawTrain,
        eval: &RawEval,
        at: &dyn Fn(Option<Range<usize>>, String) -> E,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Result<RunSettings, E> {
        let positive = |v: &Option<Spanned<usize>>, field: &str, default: usize| -> Result<usize, E> {
            match v {
                None => Ok(default),
                Some(v) if *v.get_ref() > 0 => Ok(*v.get_ref()),
                Some(v) => Err(at(Some(v.span()), format!("{field}: must be at least 1"))),
            }
        };
        let learning_rate = match &train.learning_rate {
            None => 5e-5,
            Some(v) if v.get_ref().is_finite() && *v.get_ref() > 0.0 => *v.get_ref(),
            Some(v) => return Err(at(Some(v.span()), "train.learning_rate: must be a number above 0".into())),
        };
        let center_coef = match &train.center_coef {
            None => 0.0,
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= 0.0 => *v.get_ref(),
            Some(v) => return Err(at(Some(v.span()), "train.center_coef: must be a number >= 0".into())),
        };
        let max_len = positive(&train.max_len, "train.max_len", 256)?;
        if max_len > 512 {
            let span = train.max_len.as_ref().map(Spanned::span);
            return Err(at(span, format!("train.max_len: {max_len} is above BERT's 512 positions")));
        }
        let holdout = match &eval.holdout {
            None => 0.25,
            Some(v) if (0.0..1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => return Err(at(Some(v.span()), "eval.holdout: must be in [0, 1)".into())),
        };
        Ok(RunSettings {
            train: TrainSettings {
                encoder: train.encoder.as_ref().map_or_else(|| resolve(DEFAULT_ENCODER), |e| resolve(e.get_ref())),
                epochs: positive(&train.epochs, "train.epochs", 2)?,
                batch_size: positive(&train.batch_size, "train.batch_size", 8)?,
                learning_rate,
                max_len,
                seed: train.seed.unwrap_or(1),
                margin: train.margin.unwrap_or(false),
                center_coef,
                checkpoint_every: positive(&train.checkpoint_every, "train.checkpoint_every", 50)?,
            },
            eval: EvalSettings {
                holdout,
                data: eval.data.iter().map(|d| resolve(d.get_ref())).collect(),
                seed: eval.seed.unwrap_or(7),
            },
        })
    }
}

/// The embedded encoder, relative to rules.toml (`scripts/setup.sh` downloads it).
pub const DEFAULT_ENCODER: &str = "models/all-minilm-l6-v2";

impl Default for RunSettings {
    fn default() -> Self {
        let never = |_: Option<Range<usize>>, m: String| m;
        let resolve = |p: &str| Path::new(p).to_path_buf();
        RunSettings::from_raw(&RawTrain::default(), &RawEval::default(), &never, &resolve).expect("defaults are valid")
    }
}
