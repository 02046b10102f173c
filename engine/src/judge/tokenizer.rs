//! The judge's tokenizer: a `tokenizer.json`, or a byte-level BPE rebuilt from a GGUF's
//! `tokenizer.ggml.*` metadata.
//!
//! # Rebuilding from GGUF metadata
//!
//! Only `tokenizer.ggml.model = "gpt2"` (byte-level BPE, what llama.cpp calls it for
//! SmolLM2, Qwen2, Llama 3, ...) is supported. The pieces:
//!
//! - **model**: BPE over `tokenizer.ggml.tokens` (the id is the position) and
//!   `tokenizer.ggml.merges` (`"a b"` strings, highest priority first);
//! - **pre-tokenizer**, chosen by `tokenizer.ggml.pre` (llama.cpp's names for the regexes of
//!   the original `tokenizer.json`; an unknown name is an error rather than silently wrong
//!   ids):
//!   - `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`: isolate every numeric
//!     character (`\p{N}`), then the GPT-2 byte-level split without a prefix space: what
//!     SmolLM2's own tokenizer.json and llama.cpp do. (transformers' GGUF loader skips the
//!     first step; it only matters for non-ASCII numerals, see scripts/judge_reference.py);
//!   - `gpt-2`, `gpt2`: the GPT-2 byte-level split without a prefix space;
//!   - `qwen2`: NFC, then Qwen2's regex (single digits) and byte-level mapping;
//!   - `llama3`, `llama-bpe`, `smaug-bpe`: Llama 3's regex (digits in runs of up to three)
//!     and byte-level mapping, with `ignore_merges` as in Llama 3's tokenizer.json;
//! - **special tokens**: every token of type 3 (control, e.g. `<|im_start|>`) is a special
//!   token, matched as a whole in template text; type 4 (user-defined) tokens are matched too
//!   but are not special;
//! - **no post-processor**: nothing (no BOS) is ever added implicitly; the chat template
//!   writes every special token itself.
//!
//! Candle's own `TokenizerFromGguf` is not used: for SmolLM2 (`pre = "smollm"`) it falls back
//! to a byte-level pre-tokenizer that adds a prefix space, so every text after a special
//! token gets a spurious leading space and the ids differ from the reference.
//!
//! # Trusted template text and untrusted content
//!
//! [`JudgeTokenizer::encode`] matches special tokens anywhere, as `transformers` does on a
//! rendered chat. The judge itself never lets the sample's text produce special tokens: it
//! encodes template text and content separately ([`JudgeTokenizer::encode_plain`] treats
//! `<|im_end|>` in a response as plain text), so a response cannot close its own turn and
//! answer for the judge.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::JudgeLoadError;

/// Qwen2's pre-tokenizer regex (single digits), from its tokenizer.json.
const REGEX_QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's pre-tokenizer regex (digits in runs of up to three), from its tokenizer.json.
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values this module knows (see the module docs).
pub const SUPPORTED_GGUF_PRE: &str =
    "smollm, starcoder, refact, command-r, codeshell, gpt-2, gpt2, qwen2, llama3, llama-bpe, smaug-bpe";

/// Where a [`JudgeTokenizer`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A `tokenizer.json` file.
    File(PathBuf),
    /// Rebuilt from the metadata of this GGUF file, with this `tokenizer.ggml.pre`.
    Gguf { path: PathBuf, pre: String },
}

/// A text tokenizer for the judge, see the [module docs](self).
#[derive(Clone)]
pub struct JudgeTokenizer {
    /// Matches special tokens in the text (what `transformers` does on a rendered chat).
    with_specials: Tokenizer,
    /// Treats special-token text as plain text.
    plain: Tokenizer,
    /// Special tokens by text, longest first (for splitting template text).
    specials: Vec<(String, u32)>,
    source: TokenizerSource,
}

impl std::fmt::Debug for JudgeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials.len())
            .finish()
    }
}

impl JudgeTokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<JudgeTokenizer, JudgeLoadError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| JudgeLoadError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        let specials = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (token.content, id))
            .collect();
        Ok(JudgeTokenizer::assemble(tokenizer, specials, TokenizerSource::File(path.to_path_buf())))
    }

    /// Rebuilds the tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file already
    /// read into `content`; `path` is only used in messages.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<JudgeTokenizer, JudgeLoadError> {
        let fail = |reason: String| JudgeLoadError::Tokenizer { path: path.to_path_buf(), reason };
        let get = |key: &str| content.metadata.get(key);
        let string = |key: &str| -> Result<Option<String>, JudgeLoadError> {
            get(key).map(|v| v.to_string().cloned().map_err(|_| fail(format!("`{key}` is not a string")))).transpose()
        };
        let strings = |key: &str| -> Result<Vec<String>, JudgeLoadError> {
            let value = get(key).ok_or_else(|| fail(format!("no `{key}` in the GGUF metadata")))?;
            let items = value.to_vec().map_err(|_| fail(format!("`{key}` is not an array")))?;
            items
                .iter()
                .map(|v| v.to_string().cloned().map_err(|_| fail(format!("`{key}` holds a non-string"))))
                .collect()
        };

        let model = string("tokenizer.ggml.model")?
            .ok_or_else(|| fail("no `tokenizer.ggml.model` in the GGUF metadata".into()))?;
        if model != "gpt2" {
            return Err(fail(format!(
                "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); put the \
                 model's tokenizer.json next to it"
            )));
        }
        let pre = string("tokenizer.ggml.pre")?.unwrap_or_else(|| "gpt2".into());
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(fail(format!("merge {i} (`{m}`) is not two tokens separated by a space"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<i64> = match get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(value) => value
                .to_vec()
                .map_err(|_| fail("`tokenizer.ggml.token_type` is not an array".into()))?
                .iter()
                .map(|v| match v {
                    gguf_file::Value::I32(x) => Ok(i64::from(*x)),
                    gguf_file::Value::U32(x) => Ok(i64::from(*x)),
                    gguf_file::Value::I8(x) => Ok(i64::from(*x)),
                    gguf_file::Value::U8(x) => Ok(i64::from(*x)),
                    other => Err(fail(format!("`tokenizer.ggml.token_type` holds {other:?}"))),
                })
                .collect::<Result<_, _>>()?,
        };
        if types.len() != tokens.len() {
            return Err(fail(format!("{} token types for {} tokens", types.len(), tokens.len())));
        }

        let (pre_tokenizer, nfc, ignore_merges): (PreTokenizerWrapper, bool, bool) = match pre.as_str() {
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => (
                Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
                false,
                false,
            ),
            "gpt-2" | "gpt2" => (ByteLevel::new(false, true, true).into(), false, false),
            "qwen2" => (regex_then_bytes(REGEX_QWEN2).map_err(fail)?, true, false),
            "llama3" | "llama-bpe" | "smaug-bpe" => (regex_then_bytes(REGEX_LLAMA3).map_err(fail)?, false, true),
            other => {
                return Err(fail(format!(
                    "pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported (supported: \
                     {SUPPORTED_GGUF_PRE}); put the model's tokenizer.json next to it"
                )));
            }
        };

        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(ignore_merges);
        if let Some(unk) = get("tokenizer.ggml.unknown_token_id").and_then(|v| v.to_u32().ok())
            && let Some(token) = tokens.get(unk as usize)
        {
            builder = builder.unk_token(token.clone());
        }
        let bpe = builder.build().map_err(|e| fail(format!("building the BPE model: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        if nfc {
            tokenizer.with_normalizer(Some(NFC)).map_err(|e| fail(format!("setting the normalizer: {e}")))?;
        }
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));

        let mut specials = Vec::new();
        let mut added = Vec::new();
        for (id, (token, kind)) in tokens.iter().zip(&types).enumerate() {
            match kind {
                3 => {
                    specials.push((token.clone(), id as u32));
                    added.push(AddedToken::from(token.clone(), true).normalized(false));
                }
                4 => added.push(AddedToken::from(token.clone(), false).normalized(false)),
                _ => {}
            }
        }
        tokenizer.add_tokens(added).map_err(|e| fail(format!("adding special tokens: {e}")))?;
        Ok(JudgeTokenizer::assemble(tokenizer, specials, TokenizerSource::Gguf { path: path.to_path_buf(), pre }))
    }

    fn assemble(tokenizer: Tokenizer, mut specials: Vec<(String, u32)>, source: TokenizerSource) -> JudgeTokenizer {
        let mut plain = tokenizer.clone();
        plain.set_encode_special_tokens(true);
        let mut with_specials = tokenizer;
        with_specials.set_encode_special_tokens(false);
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        JudgeTokenizer { with_specials, plain, specials, source }
    }

    /// The underlying tokenizer, matching special-token text as transformers does.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.with_specials
    }

    /// Token ids of `text`, matching special tokens (`<|im_start|>`) anywhere in it and
    /// adding nothing (no BOS): `transformers`' `encode(text, add_special_tokens=False)`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.with_specials
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("tokenizing: {e}"))
    }

    /// Token ids of `text` with special-token text treated as ordinary text.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, String> {
        self.plain.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| format!("tokenizing: {e}"))
    }

    /// Like [`encode_plain`](Self::encode_plain), with each token's byte range in `text`.
    pub fn encode_plain_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize, usize)>, String> {
        let encoding = self.plain.encode(text, false).map_err(|e| format!("tokenizing: {e}"))?;
        Ok(encoding.get_ids().iter().zip(encoding.get_offsets()).map(|(&id, &(start, end))| (id, start, end)).collect())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.with_specials.decode(ids, false).map_err(|e| format!("decoding: {e}"))
    }

    /// The id of a token given by its vocabulary string (byte-level form: `"ĠYes"` for
    /// `" Yes"`), or of a special token.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.with_specials.token_to_id(token)
    }

    /// The id of the special token `text`, if the tokenizer has one.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.specials.iter().find(|(t, _)| t == text).map(|&(_, id)| id)
    }

    /// The special tokens, longest text first.
    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.with_specials.get_vocab_size(true)
    }

    /// Where this tokenizer came from.
    pub fn source(&self) -> &TokenizerSource {
        &self.source
    }

    /// Splits trusted template text at the special tokens it contains: `Ok(id)` for a special
    /// token, `Err(text)` for the text between them.
    pub(crate) fn split_specials<'t>(&self, text: &'t str) -> Vec<Result<u32, &'t str>> {
        let mut out = Vec::new();
        let (mut text_start, mut i) = (0, 0);
        while i < text.len() {
            if text.is_char_boundary(i)
                && let Some((token, id)) =
                    self.specials.iter().find(|(t, _)| !t.is_empty() && text[i..].starts_with(t.as_str()))
            {
                if i > text_start {
                    out.push(Err(&text[text_start..i]));
                }
                out.push(Ok(*id));
                i += token.len();
                text_start = i;
                continue;
            }
            i += 1;
        }
        if text_start < text.len() {
            out.push(Err(&text[text_start..]));
        }
        out
    }

    /// Writes the tokenizer as a tokenizer.json (for tests).
    #[cfg(test)]
    pub(crate) fn save_json(&self, path: &Path) {
        self.with_specials.save(path, false).unwrap();
    }

    /// A map from vocabulary string to id (for tests and diagnostics).
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.with_specials.get_vocab(true)
    }
}

fn regex_then_bytes(regex: &str) -> Result<PreTokenizerWrapper, String> {
    let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
    Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny byte-level GGUF tokenizer: the 256 byte symbols, ChatML specials, and a few
    /// merges that make "Yes", "No", " Yes" and "Hello" single tokens.
    pub(crate) fn tiny_gguf_metadata() -> Vec<(String, gguf_file::Value)> {
        use gguf_file::Value;
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
        tokens.extend(byte_symbols());
        let merged = [
            ("Y", "e"),
            ("Ye", "s"),
            ("N", "o"),
            ("Ġ", "Yes"),
            ("Ġ", "No"),
            ("H", "e"),
            ("l", "l"),
            ("He", "ll"),
            ("Hell", "o"),
        ];
        let mut merges = Vec::new();
        for (a, b) in merged {
            merges.push(format!("{a} {b}"));
            tokens.push(format!("{a}{b}"));
        }
        let mut types = vec![1i32; tokens.len()];
        types[..3].fill(3);
        vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
            ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect())),
            ("tokenizer.ggml.merges".into(), Value::Array(merges.into_iter().map(Value::String).collect())),
            ("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect())),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ]
    }

    /// GPT-2's byte-to-symbol table, in byte order.
    fn byte_symbols() -> Vec<String> {
        let printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut symbols = vec![String::new(); 256];
        for &b in &printable {
            symbols[b as usize] = char::from_u32(b).unwrap().to_string();
        }
        let mut next = 0;
        for b in 0..256u32 {
            if !printable.contains(&b) {
                symbols[b as usize] = char::from_u32(256 + next).unwrap().to_string();
                next += 1;
            }
        }
        symbols
    }

    pub(crate) fn tiny_tokenizer() -> JudgeTokenizer {
        let content = gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: tiny_gguf_metadata().into_iter().collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        };
        JudgeTokenizer::from_gguf(&content, Path::new("tiny.gguf")).unwrap()
    }

    #[test]
    fn tiny_tokenizer_splits_digits_and_keeps_specials_whole() {
        let tok = tiny_tokenizer();
        let yes = tok.token_id("Yes").unwrap();
        let space_yes = tok.token_id("ĠYes").unwrap();
        assert_eq!(tok.encode("Yes").unwrap(), [yes]);
        assert_eq!(tok.encode(" Yes").unwrap(), [space_yes]);
        // No spurious space after a special token.
        assert_eq!(tok.encode("<|im_start|>Yes").unwrap(), [1, yes]);
        // Digits are split one by one even though they are adjacent.
        let one = tok.token_id("1").unwrap();
        let two = tok.token_id("2").unwrap();
        assert_eq!(tok.encode("12").unwrap(), [one, two]);
        // Special-token text in content is plain text for encode_plain.
        let plain = tok.encode_plain("<|im_end|>").unwrap();
        assert!(plain.len() > 1 && !plain.contains(&2), "{plain:?}");
        assert_eq!(tok.decode(&tok.encode("Hello 12 <|im_end|>").unwrap()).unwrap(), "Hello 12 <|im_end|>");
    }

    #[test]
    fn split_specials_finds_every_special() {
        let tok = tiny_tokenizer();
        assert_eq!(
            tok.split_specials("<|im_start|>user\nhé<|im_end|>\n<|im_start|>"),
            [Ok(1), Err("user\nhé"), Ok(2), Err("\n"), Ok(1)]
        );
        assert_eq!(tok.split_specials("plain"), [Err("plain")]);
        assert!(tok.split_specials("").is_empty());
    }

    #[test]
    fn unknown_pre_tokenizer_is_named() {
        let mut metadata: HashMap<String, gguf_file::Value> = tiny_gguf_metadata().into_iter().collect();
        metadata.insert("tokenizer.ggml.pre".into(), gguf_file::Value::String("mystery".into()));
        let content = gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        };
        let err = JudgeTokenizer::from_gguf(&content, Path::new("m.gguf")).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("`mystery`"), "{err}");
    }
}
