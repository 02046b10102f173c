//! What evaluation and the reward server need from a reward model.

use crate::data::Message;

/// Anything that gives one scalar reward per (prompt, response).
///
/// `engine eval` and `engine serve` use a trained [`crate::reward::RewardModel`] through
/// this trait; tests use small deterministic scorers. Implementations must be usable from
/// several threads (the server calls `score` on a blocking thread while its async workers
/// go on accepting requests).
pub trait RewardScorer: Send + Sync {
    /// One reward per item, in order: `items[i]` is a prompt (the conversation so far,
    /// possibly empty) and a response. An error fails the whole call; its message is
    /// shown to the user as it is, so it should name the item or setting it is about.
    fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, String>;

    /// A short name of the model (e.g. its folder and a hash of its weights), reported by
    /// the server and written into evaluation results.
    fn model_id(&self) -> String;
}
