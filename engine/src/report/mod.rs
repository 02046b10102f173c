//! The end-to-end job (`engine run`) and its report: see [`run`].

mod markdown;
mod run;
mod settings;
mod stages;
pub mod svg;

pub use markdown::summary;
pub use run::{LabelCounts, RunError, RunOptions, RunReport, StageTime, run};
pub use settings::{DEFAULT_ENCODER, EvalSettings, RawEval, RawTrain, RunSettings, TrainSettings};
