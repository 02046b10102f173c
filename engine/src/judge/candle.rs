//! [`CandleJudge`]: a local chat model, run with candle, answering yes/no questions about
//! samples with a per-sample cached prefix.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::Device;
use candle_core::quantized::gguf_file;
use sha2::{Digest, Sha256};

use super::answer::{self, AnswerIds, AnswerTokens};
use super::cache::PrefixCache;
use super::model::{self, Architecture, KvCache, Transformer, WeightPrecision};
use super::template::{self, ChatTemplate, JudgePrompt, Layout, Part};
use super::tokenizer::TokenizerSource;
use super::{Judge, JudgeError, JudgeLoadError, JudgeStats, JudgeTokenizer, Judgement};
use crate::data::Sample;

/// Models with at most this many weights are dequantised to f32 by [`Precision::Auto`];
/// larger ones keep their GGUF blocks and run the integer kernels ([`Precision::Int8`]).
///
/// On small models f32 is the faster of the three ways to hold the weights (the products
/// are small and gemm's f32 kernels win), and costs 4 bytes per weight: one billion weights
/// is 4 GiB, a fair ceiling for a judge that shares a worker with the scorer. Above it, int8
/// keeps the file's ~0.6 bytes per weight and is the faster of the two quantised ways. The
/// measurements behind both choices are in BENCHMARKS.md (`scripts/bench_judge_precision.sh`,
/// `scripts/bench_judge.sh --model qwen1.5b`).
pub const AUTO_F32_MAX_PARAMS: usize = 1_000_000_000;

/// How the weights are held; see [`AUTO_F32_MAX_PARAMS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 up to [`AUTO_F32_MAX_PARAMS`] weights, int8 above (GGUF only).
    #[default]
    Auto,
    /// Dequantise everything to f32 at load.
    F32,
    /// Keep a GGUF's quantised matrices as they are: a fraction of the memory, the same
    /// ratings on CPU, somewhat slower prefill (see [`AUTO_F32_MAX_PARAMS`]).
    Quantized,
    /// Keep a GGUF's quantised matrices and multiply them with int8 activations, as llama.cpp
    /// does (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K; other formats, and the output layer, as
    /// `Quantized`): ratings within llama.cpp's distance of the f32 ones (`tests/judge.rs`),
    /// speed in BENCHMARKS.md.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = String;
    /// `auto`, `f32`, `quantized` or `int8`, as rules.toml's `[judge] precision` and the
    /// CLI's `--precision` spell them.
    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "quantized" => Ok(Precision::Quantized),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("{other:?}: expected auto, f32, quantized or int8")),
        }
    }
}

/// Where the model runs: `cpu`, `cuda` or `cuda:N` (the last two need the engine's `cuda`
/// feature).
pub type JudgeDevice = crate::device::DeviceSpec;

/// Settings of a [`CandleJudge`]. The defaults suit the embedded SmolLM2-135M.
#[derive(Clone, Debug)]
pub struct CandleJudgeOptions {
    pub precision: Precision,
    pub device: JudgeDevice,
    /// The most tokens of one prompt (sample + question); capped by the model's own context
    /// length. Longer samples are cut from the left of the conversation.
    pub max_context: usize,
    /// Tokens of `max_context` kept free for the question part (the question, the template
    /// around it and the answer header). A longer question part is an error for that question.
    pub question_reserve: usize,
    /// How many samples' prefix KV caches are kept (least recently used first out). Set it
    /// to at least the number of scoring threads; each entry costs
    /// `2 × layers × kv_heads × head_dim × 4` bytes per token (46 KB for SmolLM2-135M).
    pub prefix_cache: usize,
    /// Prompt tokens per forward pass when prefilling (bounds attention memory), and the
    /// most question tokens [`Judge::ask_many`] puts in one pass.
    pub prefill_chunk: usize,
    /// Let the plugin runtime batch a pack's questions about a sample into one
    /// [`Judge::ask_many`] (see `Plugin::evaluate_many`). Off, every question is its own
    /// forward pass. Like `prefill_chunk` it changes the numbers only by rounding, so it is
    /// not part of the judge id.
    pub batch: bool,
    /// The spellings that count as yes and no.
    pub answers: AnswerTokens,
    /// Divide P(yes) and P(no) by their sum (see [`answer`](super::answer)).
    pub renormalize: bool,
    /// The model's chat template; [`ChatTemplate::auto`] picks one from the tokenizer.
    pub template: ChatTemplate,
    pub prompt: JudgePrompt,
    /// Sample first (shared, cached prefix; the default) or rule first (the paper's order,
    /// every question a full prompt). See [`template`](super::template).
    pub layout: Layout,
    /// A tokenizer.json to use; by default `tokenizer.json` beside the model, else the GGUF
    /// metadata.
    pub tokenizer: Option<PathBuf>,
}

impl Default for CandleJudgeOptions {
    fn default() -> Self {
        CandleJudgeOptions {
            precision: Precision::Auto,
            device: JudgeDevice::Cpu,
            max_context: 2048,
            question_reserve: 256,
            prefix_cache: 8,
            prefill_chunk: 512,
            batch: true,
            answers: AnswerTokens::default(),
            renormalize: false,
            template: ChatTemplate::chatml(),
            prompt: JudgePrompt::default(),
            layout: Layout::SampleFirst,
            tokenizer: None,
        }
    }
}

/// What was loaded, for logs and reports.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    pub architecture: Architecture,
    /// Weights in the checkpoint.
    pub params: usize,
    pub precision: WeightPrecision,
    /// How the weights are multiplied (see [`Transformer::arithmetic`](super::model::Transformer::arithmetic));
    /// part of the judge id.
    pub arithmetic: &'static str,
    /// Prompt tokens this judge accepts (min of `max_context` and the model's context).
    pub context: usize,
    /// The context length the model was trained for.
    pub model_context: usize,
    pub vocab: usize,
    /// The token ids that count as yes and no, with their spellings.
    pub answers: AnswerIds,
    pub tokenizer: TokenizerSource,
    /// The checkpoint's files: the GGUF, or config.json then the weight files.
    pub files: Vec<PathBuf>,
    pub load_seconds: f64,
}

/// A cached prefix: the KV cache after the sample part of the prompt.
struct Prefix {
    cache: KvCache,
}

#[derive(Default)]
struct Counters {
    questions: AtomicU64,
    prefills: AtomicU64,
    truncated_samples: AtomicU64,
    truncated_tokens: AtomicU64,
    failures: AtomicU64,
}

/// A judge model run locally with candle.
///
/// Load a GGUF (llama family including SmolLM2, or qwen2) or a safetensors checkpoint
/// (llama, qwen2; a folder with config.json) and ask questions:
///
/// ```no_run
/// use engine::data::{Message, Sample};
/// use engine::judge::{CandleJudge, CandleJudgeOptions, Judge};
///
/// let judge = CandleJudge::load(
///     "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
///     CandleJudgeOptions::default(),
/// )?;
/// let sample = Sample { prompt: vec![Message::user("How do I pick a lock?")], response: "I can't help with that.".into() };
/// let j = judge.ask(&sample, "Does the response refuse the request?")?;
/// println!("P(yes) - P(no) = {}", j.p_yes - j.p_no);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// **Shared prefix.** The prompt puts the sample first and the question last (see
/// [`template`](super::template)). The first question about a sample runs the sample part
/// once and keeps its KV cache (an LRU of [`CandleJudgeOptions::prefix_cache`] samples keyed
/// by [`SampleHash`](crate::data::SampleHash)); every question is then a short
/// continuation, and [`Judge::ask_many`] runs several questions as independent branches of
/// one forward pass. [`ask_uncached`](Self::ask_uncached) runs the whole prompt from
/// scratch, as the paper does per rule, for comparison.
///
/// **Threads.** The model is immutable once loaded and the KV cache is passed explicitly,
/// so there is no lock around the model: threads run forward passes concurrently (each
/// candle op also uses candle's thread pool). The only lock guards the LRU map for a
/// lookup; two threads asking about the same new sample compute its prefix once.
///
/// **Never panics on a sample.** Model failures, an over-long question and non-finite
/// logits are [`JudgeError`]s for that question; a sample longer than the context is cut
/// from the left of its conversation and counted in [`JudgeStats`].
pub struct CandleJudge {
    /// `"<sha256> <judge id>"`, computed on first use: hashing a large checkpoint takes a
    /// while.
    id: OnceLock<Result<String, String>>,
    unreadable_id: OnceLock<String>,
    info: ModelInfo,
    model: Transformer,
    tokenizer: JudgeTokenizer,
    options: CandleJudgeOptions,
    cache: PrefixCache<Result<Arc<Prefix>, JudgeError>>,
    counters: Counters,
}

impl std::fmt::Debug for CandleJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleJudge").field("info", &self.info).finish()
    }
}

/// The prompt of one question, as token ids: the sample part and the question part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptTokens {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
    /// Tokens cut from the left of the conversation to fit the context (0 if none).
    pub truncated: usize,
}

impl CandleJudge {
    /// Loads the model at `path`: a `.gguf` file, or a safetensors checkpoint (a folder, or
    /// a `.safetensors` file, with `config.json`).
    pub fn load(path: impl AsRef<Path>, mut options: CandleJudgeOptions) -> Result<CandleJudge, JudgeLoadError> {
        let started = Instant::now();
        let path = path.as_ref().to_path_buf();
        let bad_option = |reason: String| JudgeLoadError::Options { path: path.clone(), reason };
        if options.max_context < 16 {
            return Err(bad_option(format!("max_context {} is too small", options.max_context)));
        }
        if options.prefill_chunk == 0 {
            return Err(bad_option("prefill_chunk must be at least 1".into()));
        }
        let device = match options.device {
            JudgeDevice::Cpu => Device::Cpu,
            JudgeDevice::Cuda(ordinal) => Device::new_cuda(ordinal).map_err(|e| JudgeLoadError::Device {
                reason: format!("CUDA device {ordinal}: {e} (the engine must be built with `--features cuda`)"),
            })?,
        };

        let Checkpoint { model, tokenizer, format, files } =
            load_checkpoint(&path, options.precision, options.max_context, options.tokenizer.as_deref(), &device)?;

        let tokenizer_path = match tokenizer.source() {
            TokenizerSource::File(p) => p.clone(),
            TokenizerSource::Gguf { path, .. } => path.clone(),
        };
        let tok_err = |reason: String| JudgeLoadError::Tokenizer { path: tokenizer_path.clone(), reason };
        if options.template.is_auto() {
            options.template = ChatTemplate::detect(&tokenizer).map_err(tok_err)?;
        }
        template::check(&tokenizer, &options.template).map_err(tok_err)?;
        let answers = options.answers.resolve(&tokenizer).map_err(tok_err)?;
        let vocab = model.config().vocab;
        if let Some((word, id)) = answers.yes.iter().chain(&answers.no).find(|(_, id)| *id as usize >= vocab) {
            return Err(tok_err(format!("answer token `{word}` has id {id}, beyond the model's {vocab} embeddings")));
        }
        let context = model.max_positions();
        if options.question_reserve + 8 > context {
            return Err(bad_option(format!(
                "question_reserve {} leaves no room for the sample in a context of {context} tokens",
                options.question_reserve
            )));
        }

        let info = ModelInfo {
            path: path.clone(),
            format,
            architecture: model.config().architecture,
            params: model.params(),
            precision: model.precision(),
            arithmetic: model.arithmetic(),
            context,
            model_context: model.config().context_length,
            vocab,
            answers,
            tokenizer: tokenizer.source().clone(),
            files,
            load_seconds: started.elapsed().as_secs_f64(),
        };
        let cache = PrefixCache::new(options.prefix_cache);
        Ok(CandleJudge {
            id: OnceLock::new(),
            unreadable_id: OnceLock::new(),
            info,
            model,
            tokenizer,
            options,
            cache,
            counters: Counters::default(),
        })
    }

    /// sha256 of the checkpoint's files in [`ModelInfo::files`] order, hashed on first use
    /// (a second or so per GB); an error if a file became unreadable since loading.
    pub fn checkpoint_sha256(&self) -> Result<&str, JudgeError> {
        self.id_parts().map(|(sha, _)| sha)
    }

    fn id_parts(&self) -> Result<(&str, &str), JudgeError> {
        let id = self
            .id
            .get_or_init(|| {
                let sha = sha256_files(&self.info.files).map_err(|e| e.to_string())?;
                Ok(format!("{sha} {}", judge_id(&sha, &self.info, &self.options)))
            })
            .as_ref()
            .map_err(|e| JudgeError(e.clone()))?;
        Ok(id.split_once(' ').unwrap_or((id, id)))
    }

    /// What was loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn options(&self) -> &CandleJudgeOptions {
        &self.options
    }

    pub fn tokenizer(&self) -> &JudgeTokenizer {
        &self.tokenizer
    }

    /// Forgets every cached prefix.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// The exact token ids of the prompt for `question` about `sample` (after truncation).
    /// In the rule-first layout the question is in `prefix` and `suffix` is the assistant's
    /// turn header.
    pub fn prompt_tokens(&self, sample: &Sample, question: &str) -> Result<PromptTokens, JudgeError> {
        let suffix = self.suffix_tokens(question)?;
        match self.options.layout {
            Layout::SampleFirst => {
                let (prefix, truncated) = self.prefix_tokens(sample, None)?;
                Ok(PromptTokens { prefix, suffix, truncated })
            }
            Layout::RuleFirst => {
                let t = &self.options;
                let header = template::render_suffix(&self.tokenizer, &t.template, &t.prompt, None)
                    .tokens(&self.tokenizer)
                    .map_err(JudgeError)?;
                let extra = suffix.len().saturating_sub(header.len());
                let (prefix, truncated) = self.prefix_tokens(sample, Some((question, extra)))?;
                Ok(PromptTokens { prefix, suffix: header, truncated })
            }
        }
    }

    /// The prompt for `question` about `sample` as text, special tokens written out (what a
    /// reference implementation would tokenize; before truncation).
    pub fn prompt_text(&self, sample: &Sample, question: &str) -> String {
        let t = &self.options;
        let (first, last) = match t.layout {
            Layout::SampleFirst => (None, Some(question)),
            Layout::RuleFirst => (Some(question), None),
        };
        let prefix = template::render_prefix(&self.tokenizer, &t.template, &t.prompt, sample, 0, first);
        let suffix = template::render_suffix(&self.tokenizer, &t.template, &t.prompt, last);
        prefix.text(&self.tokenizer) + &suffix.text(&self.tokenizer)
    }

    /// Like [`Judge::ask`] but runs the whole prompt from scratch, ignoring and not filling
    /// the prefix cache: the paper's per-rule rating.
    pub fn ask_uncached(&self, sample: &Sample, question: &str) -> Result<Judgement, JudgeError> {
        self.counters.questions.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let PromptTokens { mut prefix, suffix, truncated } = self.prompt_tokens(sample, question)?;
            self.count_truncation(truncated);
            prefix.extend(suffix);
            self.check_fits(0, prefix.len())?;
            let out = self
                .model
                .forward(&prefix, None, self.options.prefill_chunk, true, false)
                .map_err(|e| JudgeError(format!("judge model: {e}")))?;
            self.judgement(out.logits)
        })();
        self.count_failure(&result);
        result
    }

    fn judgement(&self, logits: Option<Vec<f32>>) -> Result<Judgement, JudgeError> {
        let logits = logits.ok_or_else(|| JudgeError("judge model returned no logits".into()))?;
        answer::judgement(&logits, &self.info.answers, self.options.renormalize).map_err(JudgeError)
    }

    fn count_failure<T>(&self, result: &Result<T, JudgeError>) {
        if result.is_err() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_truncation(&self, truncated: usize) {
        if truncated > 0 {
            self.counters.truncated_samples.fetch_add(1, Ordering::Relaxed);
            self.counters.truncated_tokens.fetch_add(truncated as u64, Ordering::Relaxed);
        }
    }

    fn check_fits(&self, cached: usize, new: usize) -> Result<(), JudgeError> {
        if cached + new > self.info.context {
            return Err(JudgeError(format!(
                "prompt of {} tokens exceeds the judge's context of {} tokens",
                cached + new,
                self.info.context
            )));
        }
        Ok(())
    }

    /// Token ids of the question part (sample-first layout); fails if it exceeds
    /// `question_reserve`.
    fn suffix_tokens(&self, question: &str) -> Result<Vec<u32>, JudgeError> {
        let t = &self.options;
        let suffix = template::render_suffix(&self.tokenizer, &t.template, &t.prompt, Some(question));
        let ids = suffix.tokens(&self.tokenizer).map_err(JudgeError)?;
        if ids.len() > t.question_reserve {
            return Err(JudgeError(format!(
                "the question part of the prompt is {} tokens, over the {} reserved for it \
                 (question_reserve); shorten the question",
                ids.len(),
                t.question_reserve
            )));
        }
        Ok(ids)
    }

    /// Token ids of the sample part, cut from the left of the conversation to fit
    /// `context − question_reserve`; also returns how many tokens were cut. In the rule-first
    /// layout, `question_first` is the question and the tokens its turn takes, which the
    /// prefix then holds on top of that budget.
    fn prefix_tokens(
        &self,
        sample: &Sample,
        question_first: Option<(&str, usize)>,
    ) -> Result<(Vec<u32>, usize), JudgeError> {
        let t = &self.options;
        let tok = &self.tokenizer;
        let budget = self.info.context - t.question_reserve + question_first.map_or(0, |(_, n)| n);
        let first = question_first.map(|(q, _)| q);
        let full = template::render_prefix(tok, &t.template, &t.prompt, sample, 0, first);
        let ids = full.tokens(tok).map_err(JudgeError)?;
        if ids.len() <= budget {
            return Ok((ids, 0));
        }
        // Cut whole tokens off the start of the conversation: find where the token that is
        // `drop` tokens into the conversation starts, re-render from there, and retry with a
        // larger `drop` until the prompt fits.
        let too_long = || {
            JudgeError(format!(
                "the sample's prompt is {} tokens and even without its conversation it exceeds the \
                 {budget} available (context {} − question_reserve {})",
                ids.len(),
                self.info.context,
                t.question_reserve
            ))
        };
        let Some((part, range)) = full.conversation.clone() else { return Err(too_long()) };
        let Some(Part::Text(text)) = full.parts.get(part) else { return Err(too_long()) };
        let starts: Vec<usize> = tok
            .encode_plain_with_offsets(text)
            .map_err(JudgeError)?
            .into_iter()
            .map(|(_, start, _)| start)
            .filter(|s| range.contains(s))
            .collect();
        let marker = tok.encode_plain(&t.prompt.truncation_marker).map_err(JudgeError)?.len();
        let mut drop = ids.len() - budget + marker;
        for _ in 0..32 {
            let cut = match starts.get(drop) {
                Some(start) => start - range.start,
                None => range.len(),
            };
            let rendered = template::render_prefix(tok, &t.template, &t.prompt, sample, cut, first);
            let cut_ids = rendered.tokens(tok).map_err(JudgeError)?;
            if cut_ids.len() <= budget {
                return Ok((cut_ids.clone(), ids.len().saturating_sub(cut_ids.len())));
            }
            if cut >= range.len() {
                return Err(too_long());
            }
            drop += (cut_ids.len() - budget).max(1);
        }
        Err(too_long())
    }

    /// The cached prefix of `sample`, computing it if needed.
    fn prefix(&self, sample: &Sample) -> Result<Arc<Prefix>, JudgeError> {
        let slot = self.cache.slot(sample.hash());
        slot.get_or_init(|| {
            self.counters.prefills.fetch_add(1, Ordering::Relaxed);
            let (ids, truncated) = self.prefix_tokens(sample, None)?;
            self.count_truncation(truncated);
            let out = self
                .model
                .forward(&ids, None, self.options.prefill_chunk, false, true)
                .map_err(|e| JudgeError(format!("judge model: {e}")))?;
            let cache = out.cache.ok_or_else(|| JudgeError("judge model returned no cache".into()))?;
            Ok(Arc::new(Prefix { cache }))
        })
        .clone()
    }
}

impl Judge for CandleJudge {
    /// `candle/<file name>/<sha256 of the checkpoint, 12 hex>/<arithmetic>/<settings, 12
    /// hex>`, arithmetic being `f32`, `quantized-f32` or `quantized` (see
    /// [`ModelInfo::arithmetic`]); the settings hash covers everything that changes the numbers (template and
    /// prompt texts, answer token ids, renormalisation, context budget). The checkpoint is
    /// hashed on the first call; if its files became unreadable since loading, the id is
    /// `candle/<file name>/unreadable/...`, which matches no earlier score.
    fn id(&self) -> &str {
        match self.id_parts() {
            Ok((_, id)) => id,
            Err(_) => self.unreadable_id.get_or_init(|| judge_id("unreadable", &self.info, &self.options)),
        }
    }

    fn ask(&self, sample: &Sample, question: &str) -> Result<Judgement, JudgeError> {
        if self.options.layout == Layout::RuleFirst {
            return self.ask_uncached(sample, question);
        }
        self.counters.questions.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let suffix = self.suffix_tokens(question)?;
            let prefix = self.prefix(sample)?;
            self.check_fits(prefix.cache.len(), suffix.len())?;
            let out = self
                .model
                .forward(&suffix, Some(&prefix.cache), self.options.prefill_chunk, true, false)
                .map_err(|e| JudgeError(format!("judge model: {e}")))?;
            self.judgement(out.logits)
        })();
        self.count_failure(&result);
        result
    }

    /// Runs the questions as branches of one forward pass each group (groups of at most
    /// `prefill_chunk` question tokens): the weights are streamed once per group instead of
    /// once per question. The tokens that open every question (the user turn's header, and
    /// a shared start such as "Here is a safety rule:") are run once, as an extension of the
    /// sample's cached prefix, and the branches continue from there. The ids each question
    /// sees are the same as in [`ask`](Judge::ask), so the numbers are too, up to rounding.
    fn ask_many(&self, sample: &Sample, questions: &[&str]) -> Vec<Result<Judgement, JudgeError>> {
        if self.options.layout == Layout::RuleFirst {
            return questions.iter().map(|q| self.ask_uncached(sample, q)).collect();
        }
        self.counters.questions.fetch_add(questions.len() as u64, Ordering::Relaxed);
        let mut results: Vec<Option<Result<Judgement, JudgeError>>> = vec![None; questions.len()];
        let suffixes: Vec<Result<Vec<u32>, JudgeError>> = questions.iter().map(|q| self.suffix_tokens(q)).collect();
        let model_error = |e: candle_core::Error| JudgeError(format!("judge model: {e}"));
        match self.prefix(sample) {
            Err(e) => results.iter_mut().for_each(|r| *r = Some(Err(e.clone()))),
            Ok(prefix) => {
                // The questions that can run: their token ids, or their error.
                let mut runnable: Vec<(usize, &[u32])> = Vec::new();
                for (i, suffix) in suffixes.iter().enumerate() {
                    match suffix.as_ref().map_err(Clone::clone).and_then(|ids| {
                        self.check_fits(prefix.cache.len(), ids.len())?;
                        Ok(ids)
                    }) {
                        Ok(ids) => runnable.push((i, ids)),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
                let shared = if runnable.len() < 2 { 0 } else { shared_head(runnable.iter().map(|(_, ids)| *ids)) };
                let extended;
                let past = if shared == 0 {
                    &prefix.cache
                } else {
                    let head = &runnable[0].1[..shared];
                    match self.model.forward(head, Some(&prefix.cache), self.options.prefill_chunk, false, true) {
                        Ok(out) => {
                            extended = out.cache.ok_or_else(|| JudgeError("judge model returned no cache".into()));
                            match &extended {
                                Ok(cache) => cache,
                                Err(e) => {
                                    runnable.drain(..).for_each(|(i, _)| results[i] = Some(Err(e.clone())));
                                    &prefix.cache
                                }
                            }
                        }
                        Err(e) => {
                            let e = model_error(e);
                            runnable.drain(..).for_each(|(i, _)| results[i] = Some(Err(e.clone())));
                            &prefix.cache
                        }
                    }
                };
                let mut start = 0;
                while start < runnable.len() {
                    // A group: as many questions as fit in `prefill_chunk` tokens (at least one).
                    let mut end = start + 1;
                    let mut tokens = runnable[start].1.len() - shared;
                    while end < runnable.len() && tokens + runnable[end].1.len() - shared <= self.options.prefill_chunk
                    {
                        tokens += runnable[end].1.len() - shared;
                        end += 1;
                    }
                    let group = &runnable[start..end];
                    let branches: Vec<&[u32]> = group.iter().map(|(_, ids)| &ids[shared..]).collect();
                    match self.model.forward_branches(&branches, past) {
                        Ok(all) => {
                            for ((i, _), logits) in group.iter().zip(all) {
                                results[*i] = Some(self.judgement(Some(logits)));
                            }
                        }
                        Err(e) => {
                            let e = model_error(e);
                            group.iter().for_each(|(i, _)| results[*i] = Some(Err(e.clone())));
                        }
                    }
                    start = end;
                }
            }
        }
        let results: Vec<Result<Judgement, JudgeError>> =
            results.into_iter().map(|r| r.unwrap_or_else(|| Err(JudgeError("question was not run".into())))).collect();
        for r in &results {
            self.count_failure(r);
        }
        results
    }

    fn batches(&self) -> bool {
        self.options.batch && self.options.layout == Layout::SampleFirst
    }

    fn stats(&self) -> JudgeStats {
        let c = &self.counters;
        JudgeStats {
            questions: c.questions.load(Ordering::Relaxed),
            prefills: c.prefills.load(Ordering::Relaxed),
            truncated_samples: c.truncated_samples.load(Ordering::Relaxed),
            truncated_tokens: c.truncated_tokens.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }
}

/// How many leading tokens all `sequences` share, leaving each at least one token of its
/// own (the answer is read at a sequence's last token, which must be in its branch).
fn shared_head<'a>(mut sequences: impl Iterator<Item = &'a [u32]>) -> usize {
    let Some(first) = sequences.next() else { return 0 };
    let mut shared = first.len().saturating_sub(1);
    for ids in sequences {
        let common = first.iter().zip(ids).take_while(|(a, b)| a == b).count();
        shared = shared.min(common).min(ids.len().saturating_sub(1));
    }
    shared
}

fn io_error(path: &Path, e: std::io::Error) -> JudgeLoadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        JudgeLoadError::NotFound { path: path.to_path_buf() }
    } else {
        JudgeLoadError::Io { path: path.to_path_buf(), source: e }
    }
}

fn starts_with_gguf_magic(path: &Path) -> Result<bool, JudgeLoadError> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut read = 0;
    while read < 4 {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    if read == 0 && path.extension().is_some_and(|e| e == "gguf") {
        return Err(JudgeLoadError::CorruptGguf { path: path.to_path_buf(), reason: "the file is empty".into() });
    }
    if read < 4 && path.extension().is_some_and(|e| e == "gguf") {
        return Err(JudgeLoadError::CorruptGguf { path: path.to_path_buf(), reason: format!("only {read} bytes") });
    }
    let is_gguf = &magic == b"GGUF";
    if !is_gguf && path.extension().is_some_and(|e| e == "gguf") {
        return Err(JudgeLoadError::CorruptGguf {
            path: path.to_path_buf(),
            reason: format!("it does not start with the GGUF magic (found {:02x?})", &magic[..read]),
        });
    }
    Ok(is_gguf)
}

/// The tokenizer.json to use for the model at `path`, if any.
/// A checkpoint loaded for judging: the model, its tokenizer, the format and the files
/// that make up the checkpoint (hashed into the judge id).
pub(crate) struct Checkpoint {
    pub model: Transformer,
    pub tokenizer: JudgeTokenizer,
    pub format: &'static str,
    pub files: Vec<PathBuf>,
}

/// Loads the checkpoint at `path` (a GGUF file, or safetensors with config.json) and its
/// tokenizer: `tokenizer` if given, else `tokenizer.json` beside the model, else (GGUF)
/// the metadata. `Precision::Auto` runs models up to [`AUTO_F32_MAX_PARAMS`] in f32. Both
/// the candle judge and `engine serve-judge` load through here.
pub(crate) fn load_checkpoint(
    path: &Path,
    precision: Precision,
    max_context: usize,
    tokenizer: Option<&Path>,
    device: &Device,
) -> Result<Checkpoint, JudgeLoadError> {
    let path = path.to_path_buf();
    let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
    let tokenizer_json = tokenizer.map(Path::to_path_buf).or_else(|| {
        let beside = if path.is_dir() { path.join("tokenizer.json") } else { path.with_file_name("tokenizer.json") };
        beside.is_file().then_some(beside)
    });
    if meta.is_file() && starts_with_gguf_magic(&path)? {
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| JudgeLoadError::CorruptGguf { path: path.clone(), reason: e.to_string() })?;
        let plan = model::plan_gguf(&content, &path)?;
        let tokenizer = match tokenizer_json {
            Some(json) => JudgeTokenizer::from_file(&json)?,
            None => JudgeTokenizer::from_gguf(&content, &path)?,
        };
        let precision = match precision {
            Precision::Auto if plan.params() <= AUTO_F32_MAX_PARAMS => WeightPrecision::F32,
            Precision::Auto | Precision::Int8 => WeightPrecision::Int8,
            Precision::Quantized => WeightPrecision::Quantized,
            Precision::F32 => WeightPrecision::F32,
        };
        let positions = max_context.min(plan.config().context_length);
        let model = model::load_gguf(plan, &content, &mut reader, &path, precision, positions, device)?;
        Ok(Checkpoint { model, tokenizer, format: "gguf", files: vec![path] })
    } else if meta.is_dir() || path.extension().is_some_and(|e| e == "safetensors") {
        if matches!(precision, Precision::Quantized | Precision::Int8) {
            return Err(JudgeLoadError::Options {
                path,
                reason: "kept-quantised weights need a GGUF checkpoint".into(),
            });
        }
        let plan = model::plan_safetensors(&path)?;
        let dir = if meta.is_dir() { path.clone() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
        let json = tokenizer_json.unwrap_or_else(|| dir.join("tokenizer.json"));
        if !json.is_file() {
            return Err(JudgeLoadError::Tokenizer {
                path: json,
                reason: "not found (a safetensors checkpoint needs its tokenizer.json)".into(),
            });
        }
        let tokenizer = JudgeTokenizer::from_file(&json)?;
        let mut files = vec![dir.join("config.json")];
        files.extend(plan.files().iter().cloned());
        let positions = max_context.min(plan.config().context_length);
        let model = model::load_safetensors(plan, positions, device)?;
        Ok(Checkpoint { model, tokenizer, format: "safetensors", files })
    } else {
        Err(JudgeLoadError::UnknownFormat {
            path,
            reason: "no GGUF magic at its start and not a .safetensors file".into(),
        })
    }
}

fn sha256_files(files: &[PathBuf]) -> Result<String, JudgeLoadError> {
    crate::data::sha256_files(files).map_err(|(path, e)| io_error(&path, e))
}

/// The judge id (see [`Judge::id`] for [`CandleJudge`]).
fn judge_id(sha256: &str, info: &ModelInfo, options: &CandleJudgeOptions) -> String {
    let mut settings = template::wording_fingerprint(&options.template, &options.prompt);
    let ids = |side: &[(String, u32)]| side.iter().map(|(_, id)| id.to_string()).collect::<Vec<_>>().join(",");
    let _ = write!(
        settings,
        "yes={};no={};renorm={};context={};reserve={}",
        ids(&info.answers.yes),
        ids(&info.answers.no),
        options.renormalize,
        info.context,
        options.question_reserve
    );
    // Added after the first release of the id: the default layout leaves ids unchanged.
    if options.layout != Layout::SampleFirst {
        let _ = write!(settings, ";layout={}", options.layout.as_str());
    }
    let settings = hex::encode(Sha256::digest(settings.as_bytes()));
    let name = info.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("candle/{name}/{}/{}/{}", &sha256[..sha256.len().min(12)], info.arithmetic, &settings[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Message, Role};
    use crate::judge::testkit::{Tiny, Weights, write_both};
    use crate::judge::tokenizer::tests::tiny_tokenizer;

    /// Short judge texts: the tiny tokenizer spends a token per character.
    fn options() -> CandleJudgeOptions {
        CandleJudgeOptions {
            prompt: JudgePrompt {
                system: "Judge.".into(),
                sample_intro: "Chat:\n".into(),
                response_header: "Reply:\n".into(),
                question: "{question} Yes or No?".into(),
                truncation_marker: "[cut]\n".into(),
                ..JudgePrompt::default()
            },
            question_reserve: 64,
            ..CandleJudgeOptions::default()
        }
    }

    fn sample(user: &str, response: &str) -> Sample {
        Sample { prompt: vec![Message::new(Role::User, user)], response: response.into() }
    }

    #[test]
    fn probabilities_are_the_softmax_of_the_answer_logits() {
        let weights = Weights::random(Tiny::llama(), 21);
        let (_dir, _, gguf) = write_both(&weights);
        let judge = CandleJudge::load(&gguf, options()).unwrap();
        assert_eq!(judge.info().precision, WeightPrecision::F32);
        assert!(matches!(judge.info().tokenizer, TokenizerSource::Gguf { .. }));
        let s = sample("Hello", "Yes 12");
        let j = judge.ask(&s, "Rude?").unwrap();

        // The same numbers by hand: the whole prompt through the naive reference model.
        let prompt = judge.prompt_tokens(&s, "Rude?").unwrap();
        let logits = weights.reference_logits(&[prompt.prefix, prompt.suffix].concat());
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        let p = |side: &[(String, u32)]| {
            side.iter().map(|&(_, id)| f64::from(logits[id as usize] - max).exp() / z).sum::<f64>()
        };
        assert!((f64::from(j.p_yes) - p(&judge.info().answers.yes)).abs() < 1e-5, "{j:?}");
        assert!((f64::from(j.p_no) - p(&judge.info().answers.no)).abs() < 1e-5, "{j:?}");

        let full = judge.ask_uncached(&s, "Rude?").unwrap();
        assert!((full.p_yes - j.p_yes).abs() < 1e-5 && (full.p_no - j.p_no).abs() < 1e-5);
        judge.ask(&s, "Kind?").unwrap();
        judge.ask(&sample("Bye", "No"), "Kind?").unwrap();
        let stats = judge.stats();
        assert_eq!((stats.questions, stats.prefills, stats.failures), (4, 2, 0), "{stats:?}");

        let renorm = CandleJudge::load(&gguf, CandleJudgeOptions { renormalize: true, ..options() }).unwrap();
        let r = renorm.ask(&s, "Rude?").unwrap();
        assert!((r.p_yes + r.p_no - 1.0).abs() < 1e-6 && (r.p_yes / r.p_no - j.p_yes / j.p_no).abs() < 1e-3);
        assert_ne!(renorm.id(), judge.id(), "settings that change the numbers change the id");
        assert_eq!(CandleJudge::load(&gguf, options()).unwrap().id(), judge.id(), "the id is stable");
    }

    #[test]
    fn the_shared_head_leaves_every_sequence_a_token_of_its_own() {
        let seqs = |s: &[&'static [u32]]| shared_head(s.iter().copied());
        assert_eq!(seqs(&[&[1, 2, 3, 4], &[1, 2, 3, 5], &[1, 2, 9]]), 2);
        assert_eq!(seqs(&[&[1, 2, 3], &[1, 2, 3]]), 2, "identical sequences keep their last token");
        assert_eq!(seqs(&[&[1, 2, 3], &[1, 2]]), 1, "a sequence that is the others' head keeps its last");
        assert_eq!(seqs(&[&[7, 2], &[1, 2]]), 0);
        assert_eq!(seqs(&[&[1, 2, 3]]), 2);
        assert_eq!(seqs(&[]), 0);
    }

    #[test]
    fn many_questions_in_one_pass_equal_one_by_one() {
        let weights = Weights::random(Tiny::llama(), 17);
        let (_dir, _, gguf) = write_both(&weights);
        let judge = CandleJudge::load(&gguf, CandleJudgeOptions { prefill_chunk: 40, ..options() }).unwrap();
        let s = sample("Hi there", "Hello 99");
        let long = "y".repeat(100);
        let questions =
            ["Rude?", "Kind?", long.as_str(), "Is it a greeting of some sort?", "Ok?", "Is it a greeting at all?"];
        let together = judge.ask_many(&s, &questions);
        assert_eq!(together.len(), questions.len());
        for (q, t) in questions.iter().zip(&together) {
            match judge.ask(&s, q) {
                Ok(alone) => {
                    let t = t.as_ref().unwrap();
                    assert!((alone.p_yes - t.p_yes).abs() < 1e-5 && (alone.p_no - t.p_no).abs() < 1e-5, "{q}");
                }
                Err(e) => assert_eq!(t.as_ref().unwrap_err(), &e, "{q}"),
            }
        }
        assert!(together[2].as_ref().unwrap_err().0.contains("question_reserve"));
        let stats = judge.stats();
        assert_eq!((stats.questions, stats.prefills, stats.failures), (12, 1, 2), "{stats:?}");
    }

    #[test]
    fn long_samples_are_cut_and_long_questions_refused() {
        let weights = Weights::random(Tiny::qwen2(), 4);
        let (_dir, _, gguf) = write_both(&weights);
        let judge = CandleJudge::load(&gguf, CandleJudgeOptions { max_context: 160, ..options() }).unwrap();
        let long = sample(&"one two three four. ".repeat(20), "The reply.");
        let prompt = judge.prompt_tokens(&long, "Ok?").unwrap();
        assert!(prompt.truncated > 0 && prompt.prefix.len() <= 160 - 64, "{prompt:?}");
        let text = judge.tokenizer().decode(&prompt.prefix).unwrap();
        assert!(text.contains("[cut]\n") && text.ends_with("The reply.<|im_end|>\n"), "{text}");
        judge.ask(&long, "Ok?").unwrap();
        assert_eq!(judge.stats().truncated_samples, 1);

        let err = judge.ask(&long, &"x".repeat(100)).unwrap_err();
        assert!(err.0.contains("question_reserve"), "{err}");
        assert_eq!(judge.stats().failures, 1);

        // A response alone longer than the budget is cut too; a fixed part alone is refused.
        let huge = sample("hi", &"word ".repeat(100));
        assert!(judge.prompt_tokens(&huge, "Ok?").unwrap().prefix.len() <= 96);
        let tight = CandleJudgeOptions {
            max_context: 80,
            prompt: JudgePrompt { system: "A very long system prompt. ".repeat(4), ..options().prompt },
            ..options()
        };
        let err = CandleJudge::load(&gguf, tight).unwrap().ask(&huge, "Ok?").unwrap_err();
        assert!(err.0.contains("even without its conversation"), "{err}");
    }

    #[test]
    fn safetensors_checkpoints_need_their_tokenizer_json() {
        let weights = Weights::random(Tiny::llama(), 8);
        let (_dir, st, gguf) = write_both(&weights);
        let err = CandleJudge::load(&st, options()).unwrap_err();
        assert!(matches!(err, JudgeLoadError::Tokenizer { .. }) && err.to_string().contains("tokenizer.json"), "{err}");
        tiny_tokenizer().save_json(&st.join("tokenizer.json"));
        let judge = CandleJudge::load(&st, options()).unwrap();
        assert_eq!(judge.info().format, "safetensors");
        let from_gguf = CandleJudge::load(&gguf, options()).unwrap();
        let s = sample("Hi 42", "No.");
        let (a, b) = (judge.ask(&s, "Ok?").unwrap(), from_gguf.ask(&s, "Ok?").unwrap());
        assert!((a.p_yes - b.p_yes).abs() < 1e-5 && (a.p_no - b.p_no).abs() < 1e-5, "{a:?} vs {b:?}");

        let err =
            CandleJudge::load(&st, CandleJudgeOptions { precision: Precision::Quantized, ..options() }).unwrap_err();
        assert!(matches!(err, JudgeLoadError::Options { .. }), "{err}");
        let err =
            CandleJudge::load(&gguf, CandleJudgeOptions { template: ChatTemplate::llama3(), ..options() }).unwrap_err();
        assert!(matches!(err, JudgeLoadError::Tokenizer { .. }) && err.to_string().contains("llama3"), "{err}");
        #[cfg(not(feature = "cuda"))]
        {
            let err =
                CandleJudge::load(&gguf, CandleJudgeOptions { device: JudgeDevice::Cuda(0), ..options() }).unwrap_err();
            assert!(
                matches!(err, JudgeLoadError::Device { .. }) && err.to_string().contains("--features cuda"),
                "{err}"
            );
        }
    }
}
