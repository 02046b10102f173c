//! How a (conversation, response) item becomes the token ids the encoder reads.
//!
//! BERT backbones use the layout below; Llama/Qwen2 backbones use [`DECODER_LAYOUT`].
//!
//! The BERT layout, [`LAYOUT`] = `"bert-pair-v1"` in an export's `reward_model.json`:
//!
//! ```text
//! segment A (token type 0): the conversation, one line per message:
//!     "User: <text>\nAssistant: <text>\nUser: <text>"      (System messages as "System: <text>")
//! segment B (token type 1): the response, as it is
//! ids: [CLS] A [SEP] B [SEP]
//! ```
//!
//! This is exactly what a BERT tokenizer makes of the text pair `(A, B)`, so in Python
//! `tokenizer(A, B)` gives the same ids for every item that fits. When `3 + |A| + |B|`
//! exceeds `max_len` the item is **truncated** (and counted as such): the response keeps its
//! beginning and the conversation keeps its end (the latest turns, which the response
//! answers). The conversation keeps at least a third of the budget when it is that long and
//! gives the response everything else; see [`Tokenizer::encode_pair`]. Python's tokenizer
//! truncates pairs differently, so items over `max_len` should be scored through the engine
//! (`RewardModel::score`, `engine serve`) or from the ids it makes.
//!
//! Single texts (sentence embeddings) are `[CLS] text [SEP]`, cut at the end to `max_len`,
//! as sentence-transformers does.

use std::path::{Path, PathBuf};

use super::RewardError;
use crate::data::{Message, Role};

/// The name of the layout above, stored in exports.
pub const LAYOUT: &str = "bert-pair-v1";

/// Renders a conversation as segment A of the layout.
pub fn render_conversation(messages: &[Message]) -> String {
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(match m.role {
            Role::System => "System: ",
            Role::User => "User: ",
            Role::Assistant => "Assistant: ",
        });
        out.push_str(&m.content);
    }
    out
}

/// Characters of text kept per token of `max_len` before tokenising: a conversation or a
/// response is cut to `max_len × 32` characters first (the conversation keeping its end,
/// the response its beginning, as token truncation does), so that a 50 MB response costs a
/// 8 K-character tokenisation at `max_len = 256` rather than a 50 MB one. Real tokens
/// average 3–5 characters, so the cut only drops text that token truncation would drop
/// anyway; the exception is text with runs of over 32 characters per token (one 10,000
/// character "word" is a single `[UNK]`), which is then cut a little earlier than by tokens.
pub const CHARS_PER_TOKEN_BOUND: usize = 32;

/// The first `max_chars` characters of `text`, and whether anything was cut.
pub fn keep_head(text: &str, max_chars: usize) -> (&str, bool) {
    if text.len() <= max_chars {
        return (text, false);
    }
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// The last `max_chars` characters of `text`, and whether anything was cut.
pub fn keep_tail(text: &str, max_chars: usize) -> (&str, bool) {
    if text.len() <= max_chars || max_chars == 0 {
        return (if max_chars == 0 { "" } else { text }, max_chars == 0 && !text.is_empty());
    }
    match text.char_indices().rev().nth(max_chars - 1) {
        Some((start, _)) if start > 0 => (&text[start..], true),
        _ => (text, false),
    }
}

/// Token ids and token types of one item, and whether it was cut to fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub truncated: bool,
}

/// A BERT WordPiece tokenizer from a `tokenizer.json`, with its own truncation and
/// padding switched off (all-MiniLM-L6-v2's file hard-codes both to 128 tokens; the
/// layout above decides instead).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    cls: u32,
    sep: u32,
    pad: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("path", &self.path).finish()
    }
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Tokenizer, RewardError> {
        let format = |message: String| RewardError::Format { path: path.to_path_buf(), message };
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| format(e.to_string()))?;
        inner.with_truncation(None).map_err(|e| format(e.to_string()))?;
        inner.with_padding(None);
        let id = |token: &str| inner.token_to_id(token).ok_or_else(|| format(format!("the vocabulary has no {token}")));
        let (cls, sep, pad) = (id("[CLS]")?, id("[SEP]")?, id("[PAD]")?);
        Ok(Tokenizer { inner, path: path.to_path_buf(), cls, sep, pad })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The WordPiece ids of `text`, without special tokens.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, RewardError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| RewardError::Tokenize { path: self.path.clone(), message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `[CLS] text [SEP]`, the text cut at its end so that the whole fits in `max_len` (≥ 3).
    pub fn encode_single(&self, text: &str, max_len: usize) -> Result<Encoded, RewardError> {
        let mut ids = self.ids(text)?;
        let budget = max_len.max(3) - 2;
        let truncated = ids.len() > budget;
        ids.truncate(budget);
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.cls);
        out.extend(ids);
        out.push(self.sep);
        let n = out.len();
        Ok(Encoded { ids: out, type_ids: vec![0; n], truncated })
    }

    /// The layout of the [module docs](self) for a conversation and a response.
    /// Each text is first cut to `max_len ×` [`CHARS_PER_TOKEN_BOUND`] characters, so that
    /// the cost of tokenising does not grow with the input.
    pub fn encode_pair(&self, conversation: &str, response: &str, max_len: usize) -> Result<Encoded, RewardError> {
        let max_chars = max_len.saturating_mul(CHARS_PER_TOKEN_BOUND);
        let (conversation, cut_a) = keep_tail(conversation, max_chars);
        let (response, cut_b) = keep_head(response, max_chars);
        let a = self.ids(conversation)?;
        let b = self.ids(response)?;
        let (keep_a, keep_b) = split_budget(a.len(), b.len(), max_len.max(5) - 3);
        let truncated = cut_a || cut_b || keep_a < a.len() || keep_b < b.len();
        let mut ids = Vec::with_capacity(keep_a + keep_b + 3);
        ids.push(self.cls);
        ids.extend_from_slice(&a[a.len() - keep_a..]);
        ids.push(self.sep);
        let type_a = ids.len();
        ids.extend_from_slice(&b[..keep_b]);
        ids.push(self.sep);
        let mut type_ids = vec![0u32; ids.len()];
        type_ids[type_a..].iter_mut().for_each(|t| *t = 1);
        Ok(Encoded { ids, type_ids, truncated })
    }
}

/// The layout of decoder backbones (Llama, Qwen2), stored in their exports.
///
/// ```text
/// text: the conversation and the response as its last line, in the same lines as above:
///     "User: <text>\nAssistant: <text>\nUser: <text>\nAssistant: <response>"
/// ids:  tokenizer(text) with the tokenizer's own special tokens (a BOS, for many models)
/// ```
///
/// In Python, `tokenizer(text)` from the export's `tokenizer.json` gives the same ids for
/// every item that fits. When an item is longer than `max_len` it is truncated as the BERT
/// layout does: the conversation keeps its end and the response its beginning (see
/// [`split_budget`]); tokens that start before the response's first byte count as the
/// conversation's, and the tokenizer's leading and trailing special tokens stay.
pub const DECODER_LAYOUT: &str = "decoder-text-v1";

/// The text of one item in [`DECODER_LAYOUT`] and the byte offset where the response starts.
pub fn render_item(prompt: &[Message], response: &str) -> (String, usize) {
    let mut text = render_conversation(prompt);
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str("Assistant: ");
    let start = text.len();
    text.push_str(response);
    (text, start)
}

/// A decoder's tokenizer from its `tokenizer.json`, truncation and padding switched off.
#[derive(Clone)]
pub struct DecoderTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// The pad id the file's padding settings named, if any.
    padding_id: Option<u32>,
}

impl std::fmt::Debug for DecoderTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderTokenizer").field("path", &self.path).finish()
    }
}

impl DecoderTokenizer {
    pub fn load(path: &Path) -> Result<DecoderTokenizer, RewardError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })?;
        DecoderTokenizer::from_tokenizer(inner, path)
    }

    /// Wraps a tokenizer built elsewhere (from a GGUF's metadata); `path` names it in errors.
    pub fn from_tokenizer(mut inner: tokenizers::Tokenizer, path: &Path) -> Result<DecoderTokenizer, RewardError> {
        let padding_id = inner.get_padding().map(|p| p.pad_id);
        inner
            .with_truncation(None)
            .map_err(|e| RewardError::Format { path: path.to_path_buf(), message: e.to_string() })?;
        inner.with_padding(None);
        Ok(DecoderTokenizer { inner, path: path.to_path_buf(), padding_id })
    }

    /// The tokenizer as a `tokenizer.json` (truncation and padding off).
    pub fn to_json(&self) -> Result<String, RewardError> {
        self.inner.to_string(true).map_err(|e| RewardError::Format { path: self.path.clone(), message: e.to_string() })
    }

    pub fn padding_id(&self) -> Option<u32> {
        self.padding_id
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// [`DECODER_LAYOUT`]'s ids for one item, truncated to `max_len` as it describes.
    pub fn encode(&self, prompt: &[Message], response: &str, max_len: usize) -> Result<Encoded, RewardError> {
        // Bound the text before tokenising, as `Tokenizer::encode_pair` does.
        let max_chars = max_len.saturating_mul(CHARS_PER_TOKEN_BOUND);
        let (response, cut_response) = keep_head(response, max_chars);
        let (mut text, mut start) = render_item(prompt, response);
        let (conversation, cut_conversation) = keep_tail(&text[..start], max_chars);
        if cut_conversation {
            let cut = start - conversation.len();
            text.drain(..cut);
            start -= cut;
        }
        let encoding = self
            .inner
            .encode(text.as_str(), true)
            .map_err(|e| RewardError::Tokenize { path: self.path.clone(), message: e.to_string() })?;
        let ids = encoding.get_ids();
        let n = ids.len();
        if n <= max_len && !cut_response && !cut_conversation {
            return Ok(Encoded { ids: ids.to_vec(), type_ids: vec![0; n], truncated: false });
        }
        let special = encoding.get_special_tokens_mask();
        let lead = special.iter().take_while(|&&m| m == 1).count();
        let trail = special[lead..].iter().rev().take_while(|&&m| m == 1).count();
        let body_end = n - trail;
        let split = (lead..body_end).find(|&i| encoding.get_offsets()[i].0 >= start).unwrap_or(body_end);
        let budget = max_len.saturating_sub(lead + trail).max(2);
        let (keep_a, keep_b) = split_budget(split - lead, body_end - split, budget);
        let mut out = Vec::with_capacity(lead + keep_a + keep_b + trail);
        out.extend_from_slice(&ids[..lead]);
        out.extend_from_slice(&ids[split - keep_a..split]);
        out.extend_from_slice(&ids[split..split + keep_b]);
        out.extend_from_slice(&ids[body_end..]);
        let len = out.len();
        Ok(Encoded { ids: out, type_ids: vec![0; len], truncated: true })
    }
}

/// How many tokens of A (conversation, kept from its end) and B (response, kept from its
/// start) fit in `budget`: everything when it fits; otherwise A keeps
/// `max(budget − |B|, min(|A|, budget / 3))` and B the rest.
pub fn split_budget(a: usize, b: usize, budget: usize) -> (usize, usize) {
    if a + b <= budget {
        return (a, b);
    }
    let keep_a = a.min(budget.saturating_sub(b).max(budget / 3));
    (keep_a, b.min(budget - keep_a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_split_keeps_a_third_for_the_conversation() {
        assert_eq!(split_budget(10, 20, 100), (10, 20));
        // Long response: the conversation keeps a third.
        assert_eq!(split_budget(100, 500, 99), (33, 66));
        // Short conversation: it stays whole, the response gets the rest.
        assert_eq!(split_budget(10, 500, 99), (10, 89));
        // Short response: it stays whole, the conversation gets the rest.
        assert_eq!(split_budget(500, 20, 99), (79, 20));
    }

    #[test]
    fn decoder_items_end_with_the_response_and_truncate_around_it() {
        let minilm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-minilm-l6-v2/tokenizer.json");
        if !minilm.exists() {
            eprintln!("skipped: {} is missing (scripts/setup.sh downloads it)", minilm.display());
            return;
        }
        let tok = DecoderTokenizer::load(&minilm).unwrap();
        let prompt = [Message::user("one two three four five six seven eight")];
        let (text, start) = render_item(&prompt, "alpha beta gamma delta");
        assert_eq!(&text[start..], "alpha beta gamma delta");
        assert_eq!(text, "User: one two three four five six seven eight\nAssistant: alpha beta gamma delta");
        let whole = tok.encode(&prompt, "alpha beta gamma delta", 64).unwrap();
        assert!(!whole.truncated);
        // [CLS] user : one … eight assistant : alpha beta gamma delta [SEP]
        let id = |w: &str| tok.token_id(w).unwrap();
        assert_eq!(whole.ids.first(), Some(&id("[CLS]")));
        assert_eq!(whole.ids.last(), Some(&id("[SEP]")));
        let cut = tok.encode(&prompt, "alpha beta gamma delta", 9).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.ids.len(), 9);
        // Specials stay; of the 7 other places the conversation keeps its last 3 (7 − 4, more
        // than a third) and the response all 4.
        let expected: Vec<u32> =
            ["[CLS]", "eight", "assistant", ":", "alpha", "beta", "gamma", "delta", "[SEP]"].map(id).to_vec();
        assert_eq!(cut.ids, expected);
    }

    #[test]
    fn text_is_cut_by_characters_on_the_side_token_truncation_drops() {
        assert_eq!(keep_head("héllo wörld", 5), ("héllo", true));
        assert_eq!(keep_tail("héllo wörld", 5), ("wörld", true));
        assert_eq!(keep_head("short", 5), ("short", false));
        assert_eq!(keep_tail("short", 5), ("short", false));
        assert_eq!(keep_tail("ééé", 3), ("ééé", false));
    }

    #[test]
    fn a_huge_response_is_cut_before_tokenising_and_keeps_its_first_tokens() {
        let minilm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-minilm-l6-v2/tokenizer.json");
        if !minilm.exists() {
            eprintln!("skipped: {} is missing (scripts/setup.sh downloads it)", minilm.display());
            return;
        }
        let tok = Tokenizer::load(&minilm).unwrap();
        // 50 MB of words: tokenised whole this takes minutes and gigabytes.
        let huge = "alpha beta gamma delta ".repeat(50 * 1024 * 1024 / 23);
        let conversation = "User: ".to_string() + &"one two three ".repeat(1024 * 1024);
        let started = std::time::Instant::now();
        let cut = tok.encode_pair(&conversation, &huge, 64).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        let short = tok.encode_pair(&conversation[conversation.len() - 14 * 292..], &huge[..4096], 64).unwrap();
        assert!(cut.truncated && short.truncated);
        assert_eq!(cut.ids.len(), 64);
        // The response keeps its beginning, the conversation its end: the same ids as from short texts.
        assert_eq!(cut.ids, short.ids);
    }

    #[test]
    fn conversation_renders_one_line_per_message() {
        let m = [Message::user("Hi"), Message::assistant("Hello."), Message::user("How?")];
        assert_eq!(render_conversation(&m), "User: Hi\nAssistant: Hello.\nUser: How?");
    }
}
