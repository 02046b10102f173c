//! The adapter's input: sentence embeddings of a pair's conversation and responses.

use crate::data::Message;

use super::AdapterError;

/// A sentence encoder: texts in, one unit-length vector each out.
pub trait Embedder {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, AdapterError>;
    /// Names the encoder (model and file hash), recorded in the adapter so that it is
    /// never used with a different one.
    fn id(&self) -> String;
}

/// The conversation as one text: `user: …` / `assistant: …` lines, in order.
pub fn prompt_text(prompt: &[Message]) -> String {
    let mut text = String::new();
    for (i, message) in prompt.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(message.role.as_str());
        text.push_str(": ");
        text.push_str(&message.content);
    }
    text
}

/// `[p, |a − b|, (a + b) / 2]`: symmetric in the two responses.
pub fn pair_features(p: &[f32], a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut x = Vec::with_capacity(p.len() * 3);
    x.extend_from_slice(p);
    x.extend(a.iter().zip(b).map(|(a, b)| (a - b).abs()));
    x.extend(a.iter().zip(b).map(|(a, b)| (a + b) / 2.0));
    x
}

/// The reward model's BERT encoder (all-MiniLM-L6-v2 by default) as an [`Embedder`].
#[derive(Debug)]
pub struct EncoderEmbedder {
    encoder: crate::reward::Encoder,
    id: String,
    max_len: usize,
}

impl EncoderEmbedder {
    /// Tokens per text, as sentence-transformers uses for all-MiniLM-L6-v2.
    pub const MAX_LEN: usize = 256;

    /// Loads the encoder in `dir`; its id is the folder name and the sha256 of its weights.
    pub fn load(dir: &std::path::Path) -> Result<EncoderEmbedder, AdapterError> {
        let encoder = crate::reward::Encoder::load(dir, &candle_core::Device::Cpu)
            .map_err(|e| AdapterError::Encoder(format!("{}: {e}", dir.display())))?;
        let weights = dir.join("model.safetensors");
        let digest =
            crate::data::sha256_files(&[weights]).map_err(|(path, source)| AdapterError::Io { path, source })?;
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(EncoderEmbedder { encoder, id: format!("{name}@sha256:{}", &digest[..16]), max_len: Self::MAX_LEN })
    }
}

impl Embedder for EncoderEmbedder {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, AdapterError> {
        self.encoder.sentence_embeddings(texts, self.max_len).map_err(|e| AdapterError::Encoder(e.to_string()))
    }

    fn id(&self) -> String {
        self.id.clone()
    }
}
