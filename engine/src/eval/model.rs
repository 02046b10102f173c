//! A trained reward model as a [`RewardScorer`].

use std::path::{Path, PathBuf};

use super::{EvalError, RewardScorer};
use crate::data::Message;
use crate::reward::RewardModel;

/// The model id of a [`RewardModel`] used directly: where its backbone came from and its
/// head seed. [`LoadedModel`] has a sharper one.
impl RewardScorer for RewardModel {
    fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, String> {
        RewardModel::score(self, items).map_err(|e| e.to_string())
    }

    fn model_id(&self) -> String {
        format!("reward model on {} (head seed {})", self.meta.base_model, self.meta.head_seed)
    }
}

/// A reward model loaded from an export folder, named after the folder and its weights.
pub struct LoadedModel {
    pub model: RewardModel,
    /// `<folder name>@<first 12 hex digits of the sha256 of model.safetensors>`, so two
    /// servers or two evaluations report the same id exactly when their weights are equal.
    pub id: String,
    pub dir: PathBuf,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("id", &self.id).field("dir", &self.dir).finish()
    }
}

impl RewardScorer for LoadedModel {
    fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, String> {
        self.model.score(items).map_err(|e| e.to_string())
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}

/// Loads the export folder `dir` (as `engine train` writes it) on the CPU.
pub fn load_model(dir: &Path) -> Result<LoadedModel, EvalError> {
    let model = RewardModel::load(dir).map_err(|source| EvalError::Model { dir: dir.to_path_buf(), source })?;
    let weights = dir.join("model.safetensors");
    let hash = crate::data::sha256_files(&[weights]).map_err(|(path, source)| EvalError::Io { path, source })?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    Ok(LoadedModel { model, id: format!("{name}@{}", &hash[..12]), dir: dir.to_path_buf() })
}
