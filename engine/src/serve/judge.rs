//! `engine serve-judge`: our candle judge model behind an OpenAI-compatible completions API.
//!
//! The protocol is the one the remote judge ([`OpenAiJudge`](crate::judge::OpenAiJudge))
//! speaks, a subset of OpenAI's legacy completions as vLLM, llama.cpp's server and
//! llama-cpp-python serve it:
//!
//! - `POST /v1/completions` with `prompt` (a string, a list of token ids, or a list of
//!   either for several prompts), `max_tokens` (only `1`: this server scores the next
//!   token, it does not generate text), `logprobs` (how many top tokens to return, at most
//!   [`ServeJudgeOptions::max_top_logprobs`]; absent or null: none). The reply has one
//!   choice per prompt: `text` is the most likely next token (greedy; `temperature` and
//!   sampling fields are accepted and ignored) and `logprobs.top_logprobs[0]` maps token text
//!   to its log-probability over the **whole vocabulary** (log-softmax in f64), most likely
//!   first. When two tokens decode to the same text, the more likely one is listed.
//! - `GET /health`: `{"status": "ok", ...}` once the model is loaded.
//! - `GET /v1/models`: the one model, by its name.
//!
//! A string prompt is tokenized with special tokens matched (`<|im_start|>` in the text is
//! the special token), as those servers do; a list of ids is run as it is.
//!
//! **Shared prefix on the server.** A judge prompt is the sample then the question; the
//! server keeps the KV cache of the part before the question, found without knowing the
//! client's template: the last special token of the prompt (the answer header's turn
//! start, `<|im_start|>` in ChatML) and its previous occurrence (the question turn's
//! start) bound the question; everything before that occurrence is the prefix, cached in
//! an LRU of [`ServeJudgeOptions::prefix_cache`] entries and continued for the next
//! question about the same sample. A continuation gives the same logits as a full pass up
//! to rounding, so the split changes speed, never meaning.
//!
//! The model runs on tokio's blocking threads, at most [`ServeJudgeOptions::parallel`] at a
//! time (candle already spreads one forward pass over every core). Ctrl-C or SIGTERM stops
//! accepting connections and lets the requests in flight finish.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use candle_core::Device;
use serde_json::{Value, json};

use crate::judge::model::{KvCache, Transformer};
use crate::judge::{Checkpoint, JudgeLoadError, JudgeTokenizer, Precision, load_checkpoint};

/// Why `engine serve-judge` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeJudgeError {
    #[error(transparent)]
    Load(#[from] JudgeLoadError),
    #[error("serve-judge: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serve-judge: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Settings of `engine serve-judge`.
#[derive(Clone, Debug)]
pub struct ServeJudgeOptions {
    /// A `.gguf` file or a safetensors checkpoint (folder with config.json).
    pub model: PathBuf,
    /// Where to listen; port 0 picks a free port (the bound address is printed).
    pub addr: SocketAddr,
    pub precision: Precision,
    /// The most tokens of one prompt (capped by the model's own context).
    pub max_context: usize,
    /// A tokenizer.json; by default the one beside the model, else the GGUF metadata.
    pub tokenizer: Option<PathBuf>,
    /// The model name in replies and `/v1/models` (default: the file name).
    pub name: Option<String>,
    /// Sample prefixes whose KV caches are kept (0: none).
    pub prefix_cache: usize,
    /// Forward passes run at once.
    pub parallel: usize,
    /// The largest `logprobs` a request may ask for.
    pub max_top_logprobs: usize,
    /// Tokens per forward pass when prefilling.
    pub prefill_chunk: usize,
}

impl ServeJudgeOptions {
    pub fn new(model: PathBuf, addr: SocketAddr) -> ServeJudgeOptions {
        ServeJudgeOptions {
            model,
            addr,
            precision: Precision::Auto,
            max_context: 2048,
            tokenizer: None,
            name: None,
            prefix_cache: 8,
            parallel: 1,
            max_top_logprobs: 100,
            prefill_chunk: 512,
        }
    }
}

/// Parses `auto`, `f32`, `quantized` or `int8` (the CLI's `--precision`).
pub fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse().map_err(|e| format!("unknown precision {e}"))
}

/// A prompt's top next tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct NextToken {
    /// `(token id, token text, log-probability)`, most likely first.
    pub top: Vec<(u32, String, f64)>,
    pub prompt_tokens: usize,
    /// Tokens run from a cached prefix (0 when none was reused).
    pub reused_tokens: usize,
}

/// The model the server runs, with its tokenizer and prefix cache.
pub struct ServedModel {
    model: Transformer,
    tokenizer: JudgeTokenizer,
    name: String,
    path: PathBuf,
    options: ServeJudgeOptions,
    specials: Vec<u32>,
    cache: Mutex<VecDeque<(Vec<u32>, Arc<KvCache>)>>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel").field("name", &self.name).field("model", &self.model).finish()
    }
}

impl ServedModel {
    /// Loads the model as the candle judge does (same precision rule, same tokenizer
    /// choice).
    pub fn load(options: ServeJudgeOptions) -> Result<ServedModel, JudgeLoadError> {
        let path = options.model.clone();
        let Checkpoint { model, tokenizer, .. } =
            load_checkpoint(&path, options.precision, options.max_context, options.tokenizer.as_deref(), &Device::Cpu)?;
        let name = options.name.clone().unwrap_or_else(|| {
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "judge".into())
        });
        let specials = tokenizer.specials().iter().map(|&(_, id)| id).collect();
        Ok(ServedModel { model, tokenizer, name, path, options, specials, cache: Mutex::new(VecDeque::new()) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tokenizer(&self) -> &JudgeTokenizer {
        &self.tokenizer
    }

    /// The most tokens one prompt may have (the answer position included).
    pub fn context(&self) -> usize {
        self.model.max_positions()
    }

    /// Where the prefix of `ids` ends (see the module docs), if it is worth caching.
    fn split(&self, ids: &[u32]) -> Option<usize> {
        let last = ids.iter().rposition(|id| self.specials.contains(id))?;
        let split = ids[..last].iter().rposition(|&id| id == ids[last])?;
        (split >= 16).then_some(split)
    }

    /// The `k` most likely next tokens after `ids`.
    pub fn next_token(&self, ids: &[u32], k: usize) -> Result<NextToken, String> {
        if ids.is_empty() {
            return Err("the prompt is empty".into());
        }
        let vocab = self.model.config().vocab;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(format!("token id {bad} is outside the model's vocabulary of {vocab}"));
        }
        if ids.len() > self.context() {
            return Err(format!(
                "the prompt is {} tokens, over this server's context of {} (--max-context)",
                ids.len(),
                self.context()
            ));
        }
        let chunk = self.options.prefill_chunk;
        let split = if self.options.prefix_cache > 0 { self.split(ids) } else { None };
        let (logits, reused) = match split {
            Some(split) => {
                let cached = {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    let hit = cache.iter().position(|(key, _)| key.as_slice() == &ids[..split]);
                    hit.and_then(|i| cache.remove(i)).inspect(|entry| cache.push_front(entry.clone()))
                };
                let (kv, reused) = match cached {
                    Some((_, kv)) => (kv, split),
                    None => {
                        let out =
                            self.model.forward(&ids[..split], None, chunk, false, true).map_err(|e| e.to_string())?;
                        let kv = Arc::new(out.cache.ok_or("the model returned no cache")?);
                        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                        cache.push_front((ids[..split].to_vec(), kv.clone()));
                        cache.truncate(self.options.prefix_cache);
                        (kv, 0)
                    }
                };
                let out =
                    self.model.forward(&ids[split..], Some(&kv), chunk, true, false).map_err(|e| e.to_string())?;
                (out.logits, reused)
            }
            None => (self.model.forward(ids, None, chunk, true, false).map_err(|e| e.to_string())?.logits, 0),
        };
        let logits = logits.ok_or("the model returned no logits")?;
        if let Some(bad) = logits.iter().find(|x| !x.is_finite()) {
            return Err(format!("the model produced a non-finite logit ({bad})"));
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z = f64::from(max) + logits.iter().map(|&x| f64::from(x - max).exp()).sum::<f64>().ln();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.max(1).min(order.len());
        order.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(k);
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        let mut top = Vec::with_capacity(k);
        for id in order {
            let text = self.tokenizer.decode(&[id])?;
            top.push((id, text, f64::from(logits[id as usize]) - z));
        }
        Ok(NextToken { top, prompt_tokens: ids.len(), reused_tokens: reused })
    }

    /// Answers one `/v1/completions` request body: `Ok` is the reply, `Err` an HTTP status
    /// and message.
    pub fn complete(&self, body: &[u8]) -> Result<Value, (StatusCode, String)> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        match request.get("max_tokens") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64() == Some(1) => {}
            Some(v) => {
                return Err(bad(format!(
                    "max_tokens is {v}; this server only scores the next token, so max_tokens must be 1"
                )));
            }
        }
        if request.get("echo").and_then(Value::as_bool) == Some(true) {
            return Err(bad("echo is not supported".into()));
        }
        let logprobs = match request.get("logprobs") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| bad(format!("logprobs must be a whole number, not {v}")))?;
                let max = self.options.max_top_logprobs as u64;
                if n > max {
                    return Err(bad(format!("logprobs is {n}; this server returns at most {max}")));
                }
                Some(n as usize)
            }
        };
        let prompts = self.prompts(request.get("prompt").ok_or_else(|| bad("the request has no `prompt`".into()))?)?;
        let mut choices = Vec::new();
        let (mut prompt_tokens, mut reused) = (0, 0);
        for (index, ids) in prompts.iter().enumerate() {
            let next = self.next_token(ids, logprobs.unwrap_or(1)).map_err(|e| {
                let status = if e.contains("context") || e.contains("vocabulary") || e.contains("empty") {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (status, format!("prompt {index}: {e}"))
            })?;
            prompt_tokens += next.prompt_tokens;
            reused += next.reused_tokens;
            let (_, text, lp) = next.top[0].clone();
            let logprobs = logprobs.map(|n| {
                let mut map = serde_json::Map::new();
                for (_, token, lp) in next.top.iter().take(n) {
                    map.entry(token.clone()).or_insert(json!(lp));
                }
                json!({"tokens": [text], "token_logprobs": [lp], "top_logprobs": [map], "text_offset": [0]})
            });
            choices.push(json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": "length"}));
        }
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(json!({
            "id": format!("cmpl-{created}-{prompt_tokens}"),
            "object": "text_completion",
            "created": created,
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": prompts.len(),
                "total_tokens": prompt_tokens + prompts.len(),
                "cached_tokens": reused,
            },
        }))
    }

    /// The prompts of a request: a string, a list of ids, or a list of either.
    fn prompts(&self, prompt: &Value) -> Result<Vec<Vec<u32>>, (StatusCode, String)> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let ids = |list: &[Value]| -> Result<Vec<u32>, (StatusCode, String)> {
            list.iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad(format!("bad token id {v} in prompt")))
                })
                .collect()
        };
        let text = |s: &str| self.tokenizer.encode(s).map_err(|e| bad(format!("prompt: {e}")));
        match prompt {
            Value::String(s) => Ok(vec![text(s)?]),
            Value::Array(list) if list.iter().all(Value::is_number) && !list.is_empty() => Ok(vec![ids(list)?]),
            Value::Array(list) if !list.is_empty() => list
                .iter()
                .map(|p| match p {
                    Value::String(s) => text(s),
                    Value::Array(l) => ids(l),
                    other => Err(bad(format!("a prompt must be a string or a list of token ids, not {other}"))),
                })
                .collect(),
            other => Err(bad(format!("`prompt` must be a string or a list of token ids, not {other}"))),
        }
    }
}

struct AppState {
    model: ServedModel,
    gate: tokio::sync::Semaphore,
}

fn error(status: StatusCode, message: String) -> Response {
    let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
    (status, axum::Json(json!({"error": {"message": message, "type": kind, "code": status.as_u16()}}))).into_response()
}

async fn completions(State(state): State<Arc<AppState>>, body: super::TimedBody) -> Response {
    let body = match body.0 {
        Ok(body) => body,
        Err(e) => {
            let (status, message) = e.status_and_message();
            return error(status, message);
        }
    };
    let Ok(_permit) = state.gate.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".into());
    };
    let worker = state.clone();
    match tokio::task::spawn_blocking(move || worker.model.complete(&body)).await {
        Ok(Ok(reply)) => axum::Json(reply).into_response(),
        Ok(Err((status, message))) => error(status, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the model thread failed: {e}")),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({"status": "ok", "model": state.model.name, "context": state.model.context()})).into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.model;
    axum::Json(json!({
        "object": "list",
        "data": [{"id": m.name, "object": "model", "owned_by": "engine", "path": m.path.display().to_string()}],
    }))
    .into_response()
}

/// The routes, for a model already loaded.
pub fn router(model: ServedModel) -> Router {
    let parallel = model.options.parallel.max(1);
    let state = Arc::new(AppState { model, gate: tokio::sync::Semaphore::new(parallel) });
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .with_state(state)
}

/// Loads the model, listens, prints `listening on http://ADDR` (the bound address, so
/// port 0 is usable) on stdout, and serves until Ctrl-C or SIGTERM.
pub fn run(options: ServeJudgeOptions) -> Result<(), ServeJudgeError> {
    let started = Instant::now();
    let addr = options.addr;
    let model = ServedModel::load(options)?;
    eprintln!(
        "serve-judge: loaded {} ({} weights, {}, context {}) in {:.1} s",
        model.path.display(),
        model.model.params(),
        model.model.precision().as_str(),
        model.context(),
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeJudgeError::Runtime)?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeJudgeError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(ServeJudgeError::Runtime)?;
        // A closed stdout must not stop the server (see crate::stdout); the line is a courtesy.
        let _ = crate::outln!("listening on http://{bound}");
        let drained = super::serve_http(listener, router(model), async {
            super::shutdown_signal().await;
            eprintln!(
                "serve-judge: shutting down (waiting at most {} s for the requests in flight)",
                super::DRAIN.as_secs()
            );
        })
        .await;
        if let super::Drained::Cut(open) = drained {
            eprintln!("serve-judge: closed {open} connection(s) still open after {} s", super::DRAIN.as_secs());
        }
        eprintln!("serve-judge: stopped");
        Ok::<(), ServeJudgeError>(())
    })?;
    // A forward pass still running after the drain is not waited for: the process is ending.
    runtime.shutdown_background();
    Ok(())
}
