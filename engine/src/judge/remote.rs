//! [`OpenAiJudge`]: the judge behind an OpenAI-compatible completions server.
//!
//! For users who outgrow one machine: the model runs on a server (vLLM, TGI, llama.cpp's
//! `llama-server`, `llama-cpp-python`'s `llama_cpp.server`, or our own `engine serve-judge`)
//! and this judge asks it over HTTP. One question is one request:
//!
//! ```text
//! POST {url}/v1/completions
//! {"prompt": [1, 9690, 198, ...], "max_tokens": 1, "logprobs": 20, "temperature": 0, "echo": false,
//!  "model": "..."}                                  <- "model" only when configured
//! ```
//!
//! and P(yes), P(no) are read from the log-probabilities of the most likely next tokens
//! (`choices[0].logprobs.top_logprobs[0]`, a map from token text to log-probability, as in
//! OpenAI's legacy completions, vLLM and llama-cpp-python; llama.cpp's own server format,
//! `choices[0].logprobs.content[0].top_logprobs` as a list of `{token, logprob}`, is read
//! too).
//!
//! **The prompt** is rendered exactly as the local [`CandleJudge`](super::CandleJudge)
//! renders it (same [`template`](super::template) functions, same options), with the remote
//! model's tokenizer (its `tokenizer.json`, or the metadata of its GGUF: only the header is
//! read). By default ([`PromptFormat::Tokens`]) the request carries the **token ids**: the
//! server sees exactly the ids the local judge would run, and a sample that contains
//! special-token text such as `<|im_end|>` stays plain text (servers tokenize a text prompt
//! with special tokens matched, so text could close a turn and inject an answer).
//! [`PromptFormat::Text`] sends the rendered text instead, for servers that take only
//! strings; then the server's tokenizer decides the ids, and a sample whose text would
//! become special tokens there is refused with an error (only that question fails).
//!
//! **Which tokens count.** The spellings of [`AnswerTokens`] that are single tokens of the
//! tokenizer (the same rule and the same spellings as [`answer`](super::answer): by default
//! `Yes`, ` Yes`, `yes`, ` yes` and `No`, ` No`, `no`, ` no`) are looked up **by their text**
//! among the returned top tokens. P(yes) is the sum of `exp(logprob)` of the yes spellings
//! that are there, P(no) likewise. A spelling outside the top `logprobs` tokens counts 0: its
//! probability is at most that of the least likely returned token, so with 20 tokens the
//! error per missing spelling is bounded by that value (for SmolLM2 after the assistant
//! header, `Yes`/`No` hold nearly all the mass and sit at the top). With `renormalize`
//! both are divided by their sum, as the local judge does; a reply with neither a yes nor a
//! no spelling in its top tokens is then an error (the ratio is undefined), while without
//! renormalisation it is P(yes) = P(no) = 0 (both below the top tokens).
//!
//! **Failures** are [`JudgeError`]s for that question, never panics: a server that returns
//! no logprobs (llama-cpp-python must be started with `--logits_all True`), an HTTP error
//! (its status and the start of its body), a timeout, a reply that is not JSON or lacks
//! `choices`, or a non-finite log-probability. Connection failures, HTTP 429 and 5xx are
//! retried [`OpenAiJudgeOptions::retries`] times with doubling delays; a timeout is not
//! retried (a slow server would make every question wait several timeouts).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use candle_core::quantized::gguf_file;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::answer::{AnswerIds, AnswerTokens};
use super::template::{self, ChatTemplate, JudgePrompt, Layout};
use super::{Judge, JudgeError, JudgeLoadError, JudgeStats, JudgeTokenizer, Judgement};
use crate::data::Sample;

/// How the prompt travels in the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PromptFormat {
    /// `"prompt": [ids...]`: exact, and content cannot inject special tokens (vLLM,
    /// llama.cpp, llama-cpp-python, `engine serve-judge` and OpenAI accept it).
    #[default]
    Tokens,
    /// `"prompt": "text"`: for servers that take only strings.
    Text,
}

impl std::str::FromStr for PromptFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tokens" => Ok(PromptFormat::Tokens),
            "text" => Ok(PromptFormat::Text),
            other => Err(format!("unknown prompt format `{other}` (expected `tokens` or `text`)")),
        }
    }
}

/// Settings of an [`OpenAiJudge`].
#[derive(Clone, Debug)]
pub struct OpenAiJudgeOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8080` (`/v1/completions` is appended;
    /// a URL that already ends in `/v1` gets `/completions`). `https://` needs the engine's
    /// `https` feature.
    pub url: String,
    /// The `model` field of the request (servers that host one model ignore it). Also names
    /// the model in the judge id.
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer <key>` (the config reads it from an environment
    /// variable; it never goes into ids or messages).
    pub api_key: Option<String>,
    /// The most time one request may take, connecting included.
    pub timeout: Duration,
    /// Extra attempts after a connection failure, HTTP 429 or 5xx.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// How many top tokens to ask for (`logprobs`); OpenAI allows at most 5 on its own
    /// models, vLLM 20 by default, llama.cpp any.
    pub top_logprobs: u32,
    pub prompt_format: PromptFormat,
    /// The server's context in tokens, if known: longer prompts fail here with a clear
    /// message instead of at the server.
    pub max_context: Option<usize>,
    /// The spellings that count as yes and no.
    pub answers: AnswerTokens,
    /// Divide P(yes) and P(no) by their sum.
    pub renormalize: bool,
    pub template: ChatTemplate,
    pub prompt: JudgePrompt,
    /// Where the question goes relative to the sample, as for the candle judge.
    pub layout: Layout,
    /// How many requests [`Judge::ask_many`] keeps in flight at once (1: one by one).
    /// Servers with continuous batching (vLLM, TGI, llama.cpp's server with several slots)
    /// answer concurrent requests together; the plugin runtime then hands a pack's
    /// questions about a sample to `ask_many` (see `Plugin::evaluate_many`).
    pub concurrency: usize,
}

impl Default for OpenAiJudgeOptions {
    fn default() -> Self {
        OpenAiJudgeOptions {
            url: "http://127.0.0.1:8080".into(),
            model: None,
            api_key: None,
            timeout: Duration::from_secs(60),
            retries: 2,
            backoff: Duration::from_millis(250),
            top_logprobs: 20,
            prompt_format: PromptFormat::Tokens,
            max_context: None,
            answers: AnswerTokens::default(),
            renormalize: false,
            template: ChatTemplate::chatml(),
            prompt: JudgePrompt::default(),
            layout: Layout::default(),
            concurrency: 8,
        }
    }
}

#[derive(Default)]
struct Counters {
    questions: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
}

/// A judge that asks an OpenAI-compatible completions server; see the [module docs](self).
///
/// ```no_run
/// use std::path::Path;
/// use engine::data::{Message, Sample};
/// use engine::judge::{Judge, OpenAiJudge, OpenAiJudgeOptions};
///
/// let judge = OpenAiJudge::with_tokenizer_file(
///     Path::new("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
///     OpenAiJudgeOptions { url: "http://127.0.0.1:8080".into(), ..OpenAiJudgeOptions::default() },
/// )?;
/// let sample = Sample { prompt: vec![Message::user("Hi")], response: "Hello!".into() };
/// let j = judge.ask(&sample, "Is the response polite?")?;
/// println!("P(yes) - P(no) = {}", j.p_yes - j.p_no);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OpenAiJudge {
    id: String,
    endpoint: String,
    agent: ureq::Agent,
    tokenizer: JudgeTokenizer,
    answers: AnswerIds,
    options: OpenAiJudgeOptions,
    counters: Counters,
}

impl std::fmt::Debug for OpenAiJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiJudge").field("id", &self.id).field("endpoint", &self.endpoint).finish()
    }
}

/// One question's request, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteRequest {
    /// The prompt's token ids (whatever the format sent).
    pub tokens: Vec<u32>,
    /// The JSON body.
    pub body: Value,
}

impl OpenAiJudge {
    /// A judge for the server at `options.url` whose model uses `tokenizer`.
    pub fn new(tokenizer: JudgeTokenizer, options: OpenAiJudgeOptions) -> Result<OpenAiJudge, JudgeLoadError> {
        let source = match tokenizer.source() {
            super::TokenizerSource::File(p) | super::TokenizerSource::Gguf { path: p, .. } => p.clone(),
        };
        let bad = |reason: String| JudgeLoadError::Options { path: source.clone(), reason };
        let url = options.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!("remote judge url `{}`: must start with http:// or https://", options.url)));
        }
        if url.starts_with("https://") && !cfg!(feature = "https") {
            return Err(bad(format!(
                "remote judge url `{}`: https is not built into this engine; rebuild it with `--features https`",
                options.url
            )));
        }
        if options.top_logprobs == 0 {
            return Err(bad("remote judge: top_logprobs must be at least 1".into()));
        }
        if options.timeout.is_zero() {
            return Err(bad("remote judge: timeout must be above zero".into()));
        }
        let endpoint =
            if url.ends_with("/v1") { format!("{url}/completions") } else { format!("{url}/v1/completions") };
        let tok_err = |reason: String| JudgeLoadError::Tokenizer { path: source.clone(), reason };
        template::check(&tokenizer, &options.template).map_err(tok_err)?;
        let answers = options.answers.resolve(&tokenizer).map_err(tok_err)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let id = remote_id(&endpoint, &answers, &options);
        Ok(OpenAiJudge { id, endpoint, agent, tokenizer, answers, options, counters: Counters::default() })
    }

    /// Like [`new`](Self::new), with the tokenizer read from `path`: a `tokenizer.json`, or
    /// a GGUF file (only its metadata is read, not its weights).
    pub fn with_tokenizer_file(path: &Path, options: OpenAiJudgeOptions) -> Result<OpenAiJudge, JudgeLoadError> {
        let tokenizer = if path.extension().is_some_and(|e| e == "gguf") {
            let io = |source: std::io::Error| match source.kind() {
                std::io::ErrorKind::NotFound => JudgeLoadError::NotFound { path: path.to_path_buf() },
                _ => JudgeLoadError::Io { path: path.to_path_buf(), source },
            };
            let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
            let content = gguf_file::Content::read(&mut reader)
                .map_err(|e| JudgeLoadError::CorruptGguf { path: path.to_path_buf(), reason: e.to_string() })?;
            JudgeTokenizer::from_gguf(&content, path)?
        } else {
            if !path.is_file() {
                return Err(JudgeLoadError::NotFound { path: path.to_path_buf() });
            }
            JudgeTokenizer::from_file(path)?
        };
        OpenAiJudge::new(tokenizer, options)
    }

    /// The URL questions are posted to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The token ids that count as yes and no, with their spellings.
    pub fn answers(&self) -> &AnswerIds {
        &self.answers
    }

    pub fn tokenizer(&self) -> &JudgeTokenizer {
        &self.tokenizer
    }

    /// Requests retried so far (connection failures, 429, 5xx).
    pub fn retries(&self) -> u64 {
        self.counters.retries.load(Ordering::Relaxed)
    }

    /// The prompt for `question` about `sample` as text, special tokens written out (the
    /// same text as [`CandleJudge::prompt_text`](super::CandleJudge::prompt_text)).
    pub fn prompt_text(&self, sample: &Sample, question: &str) -> String {
        let (prefix, suffix) = self.render(sample, question);
        prefix.text(&self.tokenizer) + &suffix.text(&self.tokenizer)
    }

    /// The two parts of the prompt, in the configured layout (as the candle judge renders
    /// them).
    fn render(&self, sample: &Sample, question: &str) -> (template::Rendered, template::Rendered) {
        let o = &self.options;
        let (first, last) = match o.layout {
            Layout::SampleFirst => (None, Some(question)),
            Layout::RuleFirst => (Some(question), None),
        };
        let prefix = template::render_prefix(&self.tokenizer, &o.template, &o.prompt, sample, 0, first);
        let suffix = template::render_suffix(&self.tokenizer, &o.template, &o.prompt, last);
        (prefix, suffix)
    }

    /// The request for `question` about `sample`.
    pub fn request(&self, sample: &Sample, question: &str) -> Result<RemoteRequest, JudgeError> {
        let o = &self.options;
        let (prefix, suffix) = self.render(sample, question);
        let mut tokens = prefix.tokens(&self.tokenizer).map_err(JudgeError)?;
        tokens.extend(suffix.tokens(&self.tokenizer).map_err(JudgeError)?);
        if let Some(max) = o.max_context
            && tokens.len() >= max
        {
            return Err(JudgeError(format!(
                "remote judge {}: the prompt is {} tokens, over the server's context of {max} (max_context) \
                 less one for the answer; shorten the sample or raise the server's context",
                self.endpoint,
                tokens.len()
            )));
        }
        let prompt = match o.prompt_format {
            PromptFormat::Tokens => Value::from(tokens.clone()),
            PromptFormat::Text => {
                let text = prefix.text(&self.tokenizer) + &suffix.text(&self.tokenizer);
                // The server tokenizes the text with special tokens matched: refuse a
                // sample whose content would turn into special tokens there (a response
                // with `<|im_end|>` could close its turn and answer for the judge).
                if self.tokenizer.encode(&text).map_err(JudgeError)? != tokens {
                    return Err(JudgeError(format!(
                        "remote judge {}: the sample contains text that the server would read as special \
                         tokens (e.g. <|im_end|>), so with prompt_format = \"text\" it could rewrite the \
                         prompt; use prompt_format = \"tokens\" with a server that takes token ids",
                        self.endpoint
                    )));
                }
                Value::from(text)
            }
        };
        let mut body = serde_json::json!({
            "prompt": prompt,
            "max_tokens": 1,
            "logprobs": o.top_logprobs,
            "temperature": 0.0,
            "echo": false,
        });
        if let Some(model) = &o.model {
            body["model"] = Value::from(model.clone());
        }
        Ok(RemoteRequest { tokens, body })
    }

    /// Posts `body` and returns the reply's text, retrying as the module docs say.
    fn post(&self, body: &Value) -> Result<String, JudgeError> {
        let fail = |what: String| JudgeError(format!("remote judge {}: {what}", self.endpoint));
        let body = body.to_string();
        let mut delay = self.options.backoff;
        let mut attempt = 0;
        loop {
            let mut request = self.agent.post(&self.endpoint).header("Content-Type", "application/json");
            if let Some(key) = &self.options.api_key {
                request = request.header("Authorization", format!("Bearer {key}"));
            }
            let retryable = match request.send(body.as_str()) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let text = response
                        .body_mut()
                        .with_config()
                        .limit(16 << 20)
                        .read_to_string()
                        .map_err(|e| fail(format!("reading the reply (HTTP {status}): {}", describe(&e))))?;
                    if (200..300).contains(&status) {
                        return Ok(text);
                    }
                    let error = fail(format!("HTTP {status}: {}", excerpt(&text)));
                    if status == 429 || status >= 500 { error } else { return Err(error) }
                }
                Err(e @ ureq::Error::Timeout(_)) => {
                    return Err(fail(format!(
                        "{} (timeout {:.1} s; raise it if the server is slow)",
                        describe(&e),
                        self.options.timeout.as_secs_f64()
                    )));
                }
                Err(e @ (ureq::Error::ConnectionFailed | ureq::Error::Io(_))) => fail(describe(&e)),
                Err(e) => return Err(fail(describe(&e))),
            };
            if attempt >= self.options.retries {
                let tries = if attempt == 0 { String::new() } else { format!(" (after {} attempts)", attempt + 1) };
                return Err(JudgeError(format!("{retryable}{tries}")));
            }
            attempt += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
    }
}

impl Judge for OpenAiJudge {
    /// `openai/<model or "default">@<endpoint>/<settings, 12 hex>`: the settings hash
    /// covers what changes the numbers on our side (template and prompt texts, answer
    /// spellings and ids, renormalisation, top-k, prompt format). The server's weights are
    /// not visible from here: name the model (`model`) so that a new model gets a new id.
    fn id(&self) -> &str {
        &self.id
    }

    fn ask(&self, sample: &Sample, question: &str) -> Result<Judgement, JudgeError> {
        self.counters.questions.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let request = self.request(sample, question)?;
            let text = self.post(&request.body)?;
            let top =
                parse_top_logprobs(&text).map_err(|e| JudgeError(format!("remote judge {}: {e}", self.endpoint)))?;
            judgement_from_top(&top, &self.answers, self.options.renormalize)
                .map_err(|e| JudgeError(format!("remote judge {}: {e}", self.endpoint)))
        })();
        if result.is_err() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Up to `concurrency` requests at once, each question on its own request (the same
    /// requests [`ask`](Judge::ask) sends, so the same answers).
    fn ask_many(&self, sample: &Sample, questions: &[&str]) -> Vec<Result<Judgement, JudgeError>> {
        let workers = self.options.concurrency.min(questions.len());
        if workers <= 1 {
            return questions.iter().map(|q| self.ask(sample, q)).collect();
        }
        let mut results: Vec<Option<Result<Judgement, JudgeError>>> = vec![None; questions.len()];
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        (w..questions.len())
                            .step_by(workers)
                            .map(|i| (i, self.ask(sample, questions[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                // A worker that panicked leaves its questions unanswered (an error below).
                for (i, result) in handle.join().unwrap_or_default() {
                    results[i] = Some(result);
                }
            }
        });
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(JudgeError("remote judge: the request was not made".into()))))
            .collect()
    }

    fn batches(&self) -> bool {
        self.options.concurrency > 1
    }

    fn stats(&self) -> JudgeStats {
        let c = &self.counters;
        JudgeStats {
            questions: c.questions.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            ..JudgeStats::default()
        }
    }
}

/// The top tokens of the first generated position, `(token text, log-probability)`, from a
/// completions reply in either format the module docs name.
pub fn parse_top_logprobs(text: &str) -> Result<Vec<(String, f64)>, String> {
    let reply: Value =
        serde_json::from_str(text).map_err(|e| format!("the reply is not JSON ({e}): {}", excerpt(text)))?;
    if let Some(error) = reply.get("error") {
        return Err(format!("the server answered with an error: {}", excerpt(&error.to_string())));
    }
    let choice = reply
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| format!("the reply has no `choices[0]`: {}", excerpt(text)))?;
    let no_logprobs = || {
        "the reply has no logprobs (`choices[0].logprobs` is missing or empty): the server must return \
         `logprobs` for completions (llama-cpp-python: start it with `--logits_all True`)"
            .to_string()
    };
    let logprobs = choice.get("logprobs").filter(|l| !l.is_null()).ok_or_else(no_logprobs)?;
    let number = |token: &str, v: &Value| -> Result<f64, String> {
        let lp = v.as_f64().ok_or_else(|| format!("logprob of token {token:?} is not a number: {v}"))?;
        if lp.is_nan() || lp > 1e-3 {
            return Err(format!("logprob of token {token:?} is {lp}, not a log-probability"));
        }
        Ok(lp.min(0.0))
    };
    let mut top = Vec::new();
    if let Some(first) = logprobs.get("top_logprobs").and_then(Value::as_array).and_then(|t| t.first()) {
        // OpenAI legacy completions, vLLM, llama-cpp-python: [{token: logprob, ...}, ...].
        let map = first.as_object().ok_or_else(|| format!("`top_logprobs[0]` is not an object: {first}"))?;
        for (token, v) in map {
            top.push((token.clone(), number(token, v)?));
        }
    } else if let Some(first) = logprobs.get("content").and_then(Value::as_array).and_then(|c| c.first()) {
        // llama.cpp's server: {content: [{token, logprob, top_logprobs: [{token, logprob}]}]}.
        let list = first.get("top_logprobs").and_then(Value::as_array).ok_or_else(|| {
            format!("`logprobs.content[0]` has no `top_logprobs` list: {}", excerpt(&first.to_string()))
        })?;
        for entry in list {
            let token = entry
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a top_logprobs entry has no `token`: {entry}"))?;
            let lp = entry.get("logprob").ok_or_else(|| format!("a top_logprobs entry has no `logprob`: {entry}"))?;
            top.push((token.to_string(), number(token, lp)?));
        }
    }
    if top.is_empty() {
        return Err(no_logprobs());
    }
    Ok(top)
}

/// P(yes) and P(no) from the top tokens (see the module docs for what counts).
pub fn judgement_from_top(top: &[(String, f64)], answers: &AnswerIds, renormalize: bool) -> Result<Judgement, String> {
    let mass = |side: &[(String, u32)]| -> f64 {
        side.iter()
            .filter_map(|(spelling, _)| top.iter().find(|(token, _)| token == spelling).map(|(_, lp)| lp.exp()))
            .sum()
    };
    let (yes, no) = (mass(&answers.yes), mass(&answers.no));
    if yes + no > 1.0 + 1e-3 {
        return Err(format!("the yes and no tokens have probability {:.4} in all, above 1", yes + no));
    }
    let (p_yes, p_no) = if renormalize {
        if yes + no <= 0.0 {
            let shown: Vec<&str> = top.iter().take(5).map(|(t, _)| t.as_str()).collect();
            return Err(format!(
                "neither a yes nor a no token is among the {} returned (most likely: {shown:?}), so \
                 renormalised P(yes) is undefined",
                top.len()
            ));
        }
        (yes / (yes + no), no / (yes + no))
    } else {
        (yes, no)
    };
    Ok(Judgement { p_yes: p_yes.clamp(0.0, 1.0) as f32, p_no: p_no.clamp(0.0, 1.0) as f32 })
}

fn remote_id(endpoint: &str, answers: &AnswerIds, options: &OpenAiJudgeOptions) -> String {
    let mut settings = template::wording_fingerprint(&options.template, &options.prompt);
    let side = |s: &[(String, u32)]| s.iter().map(|(w, id)| format!("{w:?}={id}")).collect::<Vec<_>>().join(",");
    let _ = write!(
        settings,
        "yes={};no={};renorm={};top={};format={:?};layout={}",
        side(&answers.yes),
        side(&answers.no),
        options.renormalize,
        options.top_logprobs,
        options.prompt_format,
        options.layout.as_str()
    );
    let settings = hex::encode(Sha256::digest(settings.as_bytes()));
    let model = options.model.as_deref().unwrap_or("default");
    format!("openai/{model}@{endpoint}/{}", &settings[..12])
}

/// The start of a reply, for messages.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_string(),
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::ConnectionFailed => "could not connect (is the server running?)".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => format!("connection error: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> AnswerIds {
        AnswerIds {
            yes: vec![("Yes".into(), 1), (" Yes".into(), 2)],
            no: vec![("No".into(), 3), (" No".into(), 4)],
            skipped: vec![],
        }
    }

    #[test]
    fn both_reply_formats_are_read() {
        let legacy = r#"{"choices":[{"text":"No","logprobs":{"tokens":["No"],"token_logprobs":[-0.2],
            "top_logprobs":[{"No":-0.2,"Yes":-1.8," Yes":-9.0,"The":-5.0}]}}]}"#;
        let top = parse_top_logprobs(legacy).unwrap();
        assert_eq!(top.len(), 4);
        let j = judgement_from_top(&top, &answers(), false).unwrap();
        assert!((f64::from(j.p_yes) - ((-1.8f64).exp() + (-9.0f64).exp())).abs() < 1e-6, "{j:?}");
        assert!((f64::from(j.p_no) - (-0.2f64).exp()).abs() < 1e-6, "{j:?}");

        let llama = r#"{"choices":[{"logprobs":{"content":[{"token":"No","logprob":-0.2,
            "top_logprobs":[{"token":"No","logprob":-0.2},{"token":"Yes","logprob":-1.8}]}]}}]}"#;
        let j = judgement_from_top(&parse_top_logprobs(llama).unwrap(), &answers(), true).unwrap();
        let expected = (-1.8f64).exp() / ((-1.8f64).exp() + (-0.2f64).exp());
        assert!((f64::from(j.p_yes) - expected).abs() < 1e-6 && (j.p_yes + j.p_no - 1.0).abs() < 1e-6, "{j:?}");
    }

    #[test]
    fn bad_replies_name_their_cause() {
        let err = |text: &str| parse_top_logprobs(text).unwrap_err();
        assert!(err("<html>oops").contains("not JSON"));
        assert!(err(r#"{"object":"text_completion"}"#).contains("no `choices[0]`"));
        assert!(err(r#"{"choices":[{"text":"No","logprobs":null}]}"#).contains("no logprobs"));
        assert!(err(r#"{"choices":[{"text":"No"}]}"#).contains("--logits_all"));
        assert!(err(r#"{"choices":[{"logprobs":{"top_logprobs":[]}}]}"#).contains("no logprobs"));
        assert!(err(r#"{"choices":[{"logprobs":{"top_logprobs":[{"No":"x"}]}}]}"#).contains("not a number"));
        assert!(err(r#"{"choices":[{"logprobs":{"top_logprobs":[{"No":0.5}]}}]}"#).contains("not a log-prob"));
        assert!(err(r#"{"error":{"message":"model not loaded"}}"#).contains("model not loaded"));

        let nothing = vec![("The".to_string(), -0.1)];
        assert_eq!(judgement_from_top(&nothing, &answers(), false).unwrap(), Judgement { p_yes: 0.0, p_no: 0.0 });
        assert!(judgement_from_top(&nothing, &answers(), true).unwrap_err().contains("neither a yes nor a no"));
        let too_much = vec![("Yes".to_string(), -0.1), ("No".to_string(), -0.1)];
        assert!(judgement_from_top(&too_much, &answers(), false).unwrap_err().contains("above 1"));
    }

    #[test]
    fn excerpts_are_short_and_whole_characters() {
        let long = "é".repeat(400);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 301);
        assert_eq!(excerpt("  "), "(empty body)");
    }
}
