//! The reward server: `engine serve`, rewards over HTTP for PPO/GRPO loops.
//!
//! # Endpoints
//!
//! - `POST /score`: `{"items": [{"prompt": P, "response": "..."}, ...]}` →
//!   `{"rewards": [r, ...], "model": "<model id>"}`, one reward per item, in order. `P` is
//!   a string (one user message) or a list of `{"role": "system"|"user"|"assistant",
//!   "content": "..."}` messages; an empty string or list means no prompt. Other fields
//!   of the body and of the items are ignored.
//! - `POST /get_reward`: OpenRLHF's remote reward-model shape, `{"query": ["...", ...]}` →
//!   `{"rewards": [r, ...], "scores": [r, ...], "extra_logs": {}}`, the shape of OpenRLHF's
//!   own reward server (`scores` is what its dynamic filtering reads; a reward model has
//!   nothing more per sample to log, so `extra_logs` is empty). OpenRLHF sends each query as the full decoded text, prompt
//!   and response together; [`split_query`] says how a query is split back into a prompt
//!   and a response. Newer OpenRLHF versions also send `"prompts"` (used for the split,
//!   when present) and `"labels"` (ignored).
//! - `GET /health`: `{"status": "ok", "model": ..., "max_batch": ..., "max_items": ...,
//!   "batches": ..., "items": ...}` (batches and items scored since the start).
//!
//! A body over `--max-body-bytes` or a request of more than `--max-items` items is
//! refused with 413 and a JSON `{"error": ...}` that says which limit it crossed.
//!
//! # Errors
//!
//! Every error is JSON, `{"error": "<message>"}`, plus `"field"` when one field of the
//! request is at fault (e.g. `"items[2].prompt[0].role"`):
//!
//! - 400: the body is not JSON, or a field is missing or has the wrong type;
//! - 413: the body is larger than `--max-body-bytes`;
//! - 404 / 405: unknown path, or a method the path does not take;
//! - 500: the model failed or returned a non-finite reward (the message says which);
//! - 503: the server is shutting down.
//!
//! An empty list (`"items": []` or `"query": []`) is not an error: the answer is an empty
//! `"rewards"` list, so a client that batches dynamically needs no special case; the
//! model is not called.
//!
//! # Batching
//!
//! Handlers do not run the model. They send their items to one background batch worker
//! and wait for the rewards. When idle, the worker takes the first waiting request, then
//! keeps collecting requests until it holds `max_batch` items or `max_wait` has passed.
//! It scores one batch of at most `max_batch` items at a time on a blocking thread
//! (`tokio::task::spawn_blocking`), so inference never stalls the async runtime; the
//! requests waiting share each batch one item each in turn, so a one-item request behind
//! a 4,096-item one is answered after one batch, not after 128. Each request gets back
//! exactly its own rewards in its own order. A request whose client has gone away is
//! dropped before the next batch, even halfway through its items.
//!
//! # Shutdown
//!
//! On the shutdown signal (Ctrl-C or SIGTERM for [`run`], [`RunningServer::shutdown`] for
//! [`spawn`]) the server stops accepting connections, finishes the requests it already
//! has (their batches are scored and answered), then returns.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(scorer: Arc<dyn engine::eval::RewardScorer>) -> Result<(), engine::serve::reward::ServeError> {
//! use engine::serve::reward::{spawn, ServeOptions};
//!
//! let opts = ServeOptions { addr: "127.0.0.1:0".parse().unwrap(), ..ServeOptions::default() };
//! let server = spawn(scorer, opts)?; // port 0: the system picks a free port
//! println!("listening on {}", server.url());
//! server.shutdown()?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::data::{self, Format, Message, ReadOptions, Role, json_kind as kind};
use crate::eval::RewardScorer;
use crate::serve::{BodyError, TimedBody};

/// A prompt (possibly empty) and a response: what the model scores.
pub type Item = (Vec<Message>, String);

/// The default of [`ServeOptions::max_items`] (`--max-items`).
pub const DEFAULT_MAX_ITEMS: usize = 4096;

/// How the server listens and batches.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free port (see [`RunningServer::addr`]).
    pub addr: SocketAddr,
    /// The most items in one model call, and the batch size the worker waits for.
    pub max_batch: usize,
    /// How long the worker waits for more requests after the first one of a batch.
    pub max_wait: Duration,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Requests with more items get 413: a body under `max_body_bytes` can still hold
    /// hundreds of thousands of tiny items, each a model evaluation, and one such request
    /// would hold the batch worker (and every other client) for minutes.
    pub max_items: usize,
    /// Requests waiting for the worker beyond this many wait for room (back-pressure).
    pub queue: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            max_body_bytes: 4 << 20,
            max_items: DEFAULT_MAX_ITEMS,
            queue: 1024,
        }
    }
}

/// The server could not start or failed.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("invalid option: {0}")]
    Options(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the server stopped with an error")]
    Serve(#[source] std::io::Error),
    #[error("the server thread panicked")]
    Panicked,
    #[error(transparent)]
    Model(#[from] crate::eval::EvalError),
}

impl ServeOptions {
    fn check(&self) -> Result<(), ServeError> {
        for (name, value) in [
            ("max-batch", self.max_batch),
            ("max-body-bytes", self.max_body_bytes),
            ("max-items", self.max_items),
            ("queue", self.queue),
        ] {
            if value == 0 {
                return Err(ServeError::Options(format!("--{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// One request's items, waiting for the worker, and where its rewards go.
struct Job {
    items: Vec<Item>,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

/// Counters shown by `/health`.
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    items: AtomicU64,
}

#[derive(Clone)]
struct AppState {
    jobs: mpsc::Sender<Job>,
    model: Arc<str>,
    max_batch: usize,
    max_body_bytes: usize,
    max_items: usize,
    stats: Arc<Stats>,
}

/// Serves on `listener` until `shutdown` completes, then finishes the requests in flight
/// (for at most [`super::DRAIN`]).
///
/// Must run inside a tokio runtime whose blocking pool is available (any runtime built
/// with `enable_all`): the model runs there.
pub async fn serve(
    scorer: Arc<dyn RewardScorer>,
    listener: tokio::net::TcpListener,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    opts.check()?;
    let (jobs, receiver) = mpsc::channel(opts.queue);
    let stats = Arc::new(Stats::default());
    let state = AppState {
        jobs,
        model: Arc::from(scorer.model_id()),
        max_batch: opts.max_batch,
        max_body_bytes: opts.max_body_bytes,
        max_items: opts.max_items,
        stats: stats.clone(),
    };
    let worker = tokio::spawn(batch_worker(scorer, receiver, opts.max_batch, opts.max_wait, stats));
    match super::serve_http(listener, router(state), shutdown).await {
        // Every handler (and so every job sender) is gone: the worker has nothing left.
        super::Drained::Clean => {
            let _ = worker.await;
        }
        // Some client did not finish within the drain: its request is dropped unscored.
        super::Drained::Cut(open) => {
            eprintln!("closed {open} connection(s) still open after {} s", super::DRAIN.as_secs());
            worker.abort();
        }
    }
    Ok(())
}

fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/score", post(score))
        .route("/get_reward", post(get_reward))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds `addr` (port 0: a free port).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })
}

fn runtime() -> Result<tokio::runtime::Runtime, ServeError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)
}

/// Runs the server in the foreground until Ctrl-C or SIGTERM: binds `opts.addr`, calls
/// `on_ready` with the bound address (the real port when `opts.addr` has port 0), serves,
/// and returns once the requests in flight are answered.
pub fn run(
    scorer: Arc<dyn RewardScorer>,
    opts: &ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    opts.check()?;
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let listener = bind(opts.addr).await?;
        on_ready(listener.local_addr().map_err(ServeError::Serve)?);
        serve(scorer, listener, opts, async {
            super::shutdown_signal().await;
            eprintln!("shutting down: finishing the requests in flight (at most {} s)", super::DRAIN.as_secs());
        })
        .await
    });
    // A model call still running after the drain is not waited for: the process is ending.
    runtime.shutdown_background();
    result
}

/// Serve a reward model over HTTP: `POST /score`, OpenRLHF's `POST /get_reward`,
/// `GET /health`.
///
/// Requests from concurrent clients are batched: a worker collects items until it holds
/// --max-batch of them or --max-wait-ms has passed, then scores them in one forward pass;
/// concurrent requests share each batch, so a small one is not stuck behind a large one.
/// Prints `listening on http://ADDR` once bound (port 0 picks a free port). Ctrl-C or
/// SIGTERM stops accepting connections and answers the requests in flight before exiting,
/// waiting at most 5 s for them. Bodies must arrive within 30 s (else 408).
/// Errors are JSON (`{"error": ..., "field": ...}`): 400 bad JSON or shape, 413 body over
/// --max-body-bytes, 500 model failure; empty lists get empty `rewards`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = r#"Examples:
  engine serve --model runs/rm --addr 127.0.0.1:8000
  curl -s localhost:8000/health
  curl -s localhost:8000/score -d '{"items": [{"prompt": "How do I pick a lock?", "response": "I cannot help with that."}]}'
  curl -s localhost:8000/score -d '{"items": [{"prompt": [{"role": "user", "content": "Hi"}], "response": "Hello!"}]}'
  curl -s localhost:8000/get_reward -d '{"query": ["\n\nHuman: Hi\n\nAssistant: Hello!"]}'

OpenRLHF: pass --remote_rm_url http://HOST:8000/get_reward. A query is split into prompt and
response by the request's "prompts" (when given and a prefix), else as an HH-RLHF transcript
("Human: ... Assistant: ..."), else scored whole as the response to an empty prompt."#)]
pub struct ServeArgs {
    /// The reward model: an export folder written by `engine train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on; port 0 picks a free one (printed as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// The most items per forward pass; the batch worker waits for this many.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// How long the batch worker waits for more requests after the first of a batch.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Larger request bodies are refused with 413.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Requests with more items (responses to score) are refused with 413.
    #[arg(long, default_value_t = DEFAULT_MAX_ITEMS)]
    pub max_items: usize,
}

/// `engine serve`: loads the model, prints `listening on http://ADDR`, serves until
/// Ctrl-C or SIGTERM.
pub fn run_args(args: &ServeArgs) -> Result<(), ServeError> {
    let opts = ServeOptions {
        addr: args.addr,
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        max_body_bytes: args.max_body_bytes,
        max_items: args.max_items,
        ..ServeOptions::default()
    };
    opts.check()?;
    let model = crate::eval::load_model(&args.model)?;
    eprintln!("loaded {} from {}", model.id, args.model.display());
    run(Arc::new(model), &opts, |addr| {
        // A closed stdout must not stop the server (see crate::stdout); the line is a courtesy.
        let _ = crate::outln!("listening on http://{addr}");
    })
}

/// A server running on a background thread; see [`spawn`].
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl RunningServer {
    /// The bound address (with the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts down gracefully: stops accepting, answers the requests in flight, and waits
    /// for the server thread.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Starts the server on a background thread with its own runtime and returns once it
/// listens. For tests and for embedding; the command line uses [`run`].
pub fn spawn(scorer: Arc<dyn RewardScorer>, opts: ServeOptions) -> Result<RunningServer, ServeError> {
    opts.check()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, ServeError>>();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("reward-server".into())
        .spawn(move || {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return Ok(());
                }
            };
            runtime.block_on(async move {
                let listener = match bind(opts.addr).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return Ok(());
                    }
                };
                let _ = ready_tx.send(listener.local_addr().map_err(ServeError::Serve));
                serve(scorer, listener, &opts, async {
                    let _ = stopped.await;
                })
                .await
            })
        })
        .map_err(ServeError::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok(RunningServer { addr, stop: Some(stop), thread: Some(thread) }),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(ServeError::Panicked)
        }
    }
}

/// A request the worker has taken: its items, the rewards scored so far (in order), and
/// where they go once complete.
struct Pending {
    job: Job,
    rewards: Vec<f32>,
}

impl Pending {
    fn left(&self) -> usize {
        self.job.items.len() - self.rewards.len()
    }
}

/// How many items each waiting request gives to the next batch of at most `max_batch`:
/// one item per request in turn, so that requests share a batch evenly. A request of 4,096
/// items therefore takes one batch slot per round like any other, and a one-item request
/// that arrives behind it is answered after one batch, not after 128.
fn share(left: &[usize], max_batch: usize) -> Vec<usize> {
    let mut take = vec![0; left.len()];
    let mut room = max_batch;
    while room > 0 {
        let mut gave = false;
        for (take, &left) in take.iter_mut().zip(left) {
            if room == 0 {
                break;
            }
            if *take < left {
                *take += 1;
                room -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    take
}

/// Collects requests into batches and scores them one batch (`max_batch` items at most)
/// at a time, the requests sharing each batch (see [`share`]); ends when every sender is
/// gone and nothing is left. A request whose client has gone away is dropped before the
/// next batch, even halfway through its items.
async fn batch_worker(
    scorer: Arc<dyn RewardScorer>,
    mut receiver: mpsc::Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
    stats: Arc<Stats>,
) {
    let mut active: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
    loop {
        if active.is_empty() {
            // Idle: wait for a request, then up to `max_wait` for the batch to fill.
            let Some(first) = receiver.recv().await else { break };
            let deadline = tokio::time::Instant::now() + max_wait;
            let mut count = first.items.len();
            active.push_back(Pending { job: first, rewards: Vec::new() });
            while count < max_batch {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => {
                        count += job.items.len();
                        active.push_back(Pending { job, rewards: Vec::new() });
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Busy: whatever arrived meanwhile joins the next batch without waiting.
        while let Ok(job) = receiver.try_recv() {
            active.push_back(Pending { job, rewards: Vec::new() });
        }
        active.retain(|pending| !pending.job.reply.is_closed());
        if active.is_empty() {
            continue;
        }

        let left: Vec<usize> = active.iter().map(Pending::left).collect();
        let take = share(&left, max_batch);
        let items: Vec<Item> = active
            .iter()
            .zip(&take)
            .flat_map(|(pending, &n)| {
                let from = pending.rewards.len();
                pending.job.items[from..from + n].iter().cloned()
            })
            .collect();
        let total = items.len();
        let model = scorer.clone();
        let result = match tokio::task::spawn_blocking(move || score_in_chunks(model.as_ref(), &items, max_batch)).await
        {
            Ok(result) => result,
            Err(error) => Err(format!("the model panicked: {error}")),
        };
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.items.fetch_add(total as u64, Ordering::Relaxed);

        let mut rest = result.as_deref().unwrap_or_default();
        // Requests that got no slot (more requests than `max_batch`) go first next time.
        let mut waiting = std::collections::VecDeque::new();
        let mut started = std::collections::VecDeque::new();
        for (mut pending, n) in active.drain(..).zip(take) {
            if n == 0 {
                waiting.push_back(pending);
                continue;
            }
            if let Err(message) = &result {
                let _ = pending.job.reply.send(Err(message.clone()));
                continue;
            }
            let (mine, others) = rest.split_at(n);
            rest = others;
            pending.rewards.extend_from_slice(mine);
            if pending.left() == 0 {
                let _ = pending.job.reply.send(Ok(pending.rewards));
            } else {
                started.push_back(pending);
            }
        }
        waiting.append(&mut started);
        let next = waiting;
        active = next;
    }
}

/// Scores `items` in calls of at most `max_batch`, checking the count and finiteness.
fn score_in_chunks(scorer: &dyn RewardScorer, items: &[Item], max_batch: usize) -> Result<Vec<f32>, String> {
    let mut rewards = Vec::with_capacity(items.len());
    for chunk in items.chunks(max_batch) {
        let scores = scorer.score(chunk)?;
        if scores.len() != chunk.len() {
            return Err(format!("the model returned {} rewards for {} items", scores.len(), chunk.len()));
        }
        if let Some(i) = scores.iter().position(|r| !r.is_finite()) {
            return Err(format!(
                "the model returned a non-finite reward ({}) for a response of {} bytes",
                scores[i],
                chunk[i].1.len()
            ));
        }
        rewards.extend(scores);
    }
    Ok(rewards)
}

/// An error answer: `{"error": message}` plus `"field"` when one field is at fault.
#[derive(Debug, Clone, PartialEq)]
struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, field: None, message: message.into() }
    }

    /// A 400 about `field`; the message is prefixed with the field's path.
    fn field(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let field = field.into();
        ApiError { status: StatusCode::BAD_REQUEST, message: format!("{field}: {message}"), field: Some(field) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl AppState {
    /// Hands `items` to the batch worker and waits for their rewards.
    async fn rewards(&self, items: Vec<Item>) -> Result<Vec<f32>, ApiError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if items.len() > self.max_items {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request has {} items, more than {} (--max-items); split it into smaller requests",
                    items.len(),
                    self.max_items
                ),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { items, reply })
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?;
        match answer.await {
            Ok(Ok(rewards)) => Ok(rewards),
            Ok(Err(message)) => {
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed: {message}")))
            }
            Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")),
        }
    }

    /// The body, or 413/408/400 when it could not be read.
    fn body(&self, body: TimedBody) -> Result<Value, ApiError> {
        let bytes = body.0.map_err(|error| match error {
            BodyError::Rejected(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes (--max-body-bytes)", self.max_body_bytes),
            ),
            other => {
                let (status, message) = other.status_and_message();
                ApiError::new(status, message)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the request body is not valid JSON: {e}")))
    }
}

async fn score(State(state): State<AppState>, body: TimedBody) -> Result<Response, ApiError> {
    let items = parse_score_request(&state.body(body)?)?;
    let rewards = state.rewards(items).await?;
    Ok(axum::Json(json!({ "rewards": rewards, "model": &*state.model })).into_response())
}

async fn get_reward(State(state): State<AppState>, body: TimedBody) -> Result<Response, ApiError> {
    let items = parse_get_reward_request(&state.body(body)?)?;
    let rewards = state.rewards(items).await?;
    Ok(axum::Json(json!({ "rewards": rewards, "scores": rewards, "extra_logs": {} })).into_response())
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "model": &*state.model,
        "max_batch": state.max_batch,
        "max_items": state.max_items,
        "batches": state.stats.batches.load(Ordering::Relaxed),
        "items": state.stats.items.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint: use POST /score, POST /get_reward or GET /health")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: /score and /get_reward take POST, /health GET")
}

/// `body[name]` as a list.
fn list<'a>(body: &'a Value, name: &str) -> Result<&'a [Value], ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON object with a \"{name}\" list, found {}", kind(body)),
        )
    })?;
    match object.get(name) {
        None => Err(ApiError::field(name, "missing")),
        Some(Value::Array(values)) => Ok(values),
        Some(other) => Err(ApiError::field(name, format!("expected a list, found {}", kind(other)))),
    }
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    value.as_str().ok_or_else(|| ApiError::field(path, format!("expected a string, found {}", kind(value))))
}

/// The items of a `/score` body; errors name the field, e.g. `items[1].prompt[0].role`.
fn parse_score_request(body: &Value) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    for (i, item) in list(body, "items")?.iter().enumerate() {
        let path = format!("items[{i}]");
        let object = item
            .as_object()
            .ok_or_else(|| ApiError::field(&path, format!("expected an object, found {}", kind(item))))?;
        let prompt = match object.get("prompt") {
            None => return Err(ApiError::field(format!("{path}.prompt"), "missing")),
            Some(Value::String(text)) if text.is_empty() => Vec::new(),
            Some(Value::String(text)) => vec![Message::user(text.as_str())],
            Some(Value::Array(messages)) => messages
                .iter()
                .enumerate()
                .map(|(j, message)| parse_message(message, &format!("{path}.prompt[{j}]")))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ApiError::field(
                    format!("{path}.prompt"),
                    format!("expected a string or a list of messages, found {}", kind(other)),
                ));
            }
        };
        let response = match object.get("response") {
            None => return Err(ApiError::field(format!("{path}.response"), "missing")),
            Some(value) => string(value, &format!("{path}.response"))?,
        };
        items.push((prompt, response.to_owned()));
    }
    Ok(items)
}

fn parse_message(value: &Value, path: &str) -> Result<Message, ApiError> {
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::field(path, format!("expected a message object, found {}", kind(value))))?;
    let field = |name: &str| {
        let path = format!("{path}.{name}");
        object.get(name).ok_or_else(|| ApiError::field(&path, "missing")).and_then(|v| string(v, &path))
    };
    let role_name = field("role")?;
    let role = Role::from_name(role_name).ok_or_else(|| {
        ApiError::field(format!("{path}.role"), format!("unknown role {role_name:?} (system, user or assistant)"))
    })?;
    Ok(Message::new(role, field("content")?))
}

/// The items of a `/get_reward` body: `query` (a list of strings, required) and
/// `prompts` (optional, a list of strings as long as `query`), split by [`split_query`].
fn parse_get_reward_request(body: &Value) -> Result<Vec<Item>, ApiError> {
    let queries = list(body, "query")?;
    let prompts = match body.get("prompts") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let prompts = list(body, "prompts")?;
            if prompts.len() != queries.len() {
                return Err(ApiError::field(
                    "prompts",
                    format!("has {} entries but query has {}", prompts.len(), queries.len()),
                ));
            }
            Some(prompts)
        }
    };
    queries
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let query = string(query, &format!("query[{i}]"))?;
            let prompt = prompts.map(|p| string(&p[i], &format!("prompts[{i}]"))).transpose()?;
            Ok(split_query(query, prompt))
        })
        .collect()
}

/// How `/get_reward` turns one OpenRLHF query (prompt and response in one text) into the
/// prompt and response the model scores. The first rule that applies wins:
///
/// 1. `prompt` is given (the request's `prompts[i]`) and `query` starts with it: the
///    prompt is that text as one user message, the response is the rest of `query`.
/// 2. `query` is an HH-RLHF transcript (`"\n\nHuman: ...\n\nAssistant: ..."`, the leading
///    blank line optional), parsed exactly as the `hh-rlhf` data format: the turns before
///    the last Assistant turn are the prompt, that turn is the response.
/// 3. Otherwise the whole query is scored as the response to an empty prompt.
pub fn split_query(query: &str, prompt: Option<&str>) -> Item {
    if let Some(prompt) = prompt.filter(|p| !p.is_empty())
        && let Some(response) = query.strip_prefix(prompt)
    {
        return (vec![Message::user(prompt)], response.to_owned());
    }
    if let Some(split) = split_transcript(query) {
        return split;
    }
    (Vec::new(), query.to_owned())
}

fn split_transcript(query: &str) -> Option<Item> {
    if !query.contains("Assistant:") {
        return None;
    }
    let text = if query.starts_with("Human: ") { format!("\n\n{query}") } else { query.to_owned() };
    let row = json!({ "chosen": text, "rejected": text }).to_string();
    let opts = ReadOptions { format: Format::HhRlhf, skip_invalid: false };
    let pair = data::read_pairs_from(row.as_bytes(), "query", &opts).ok()?.pairs.into_iter().next()?;
    Some((pair.prompt, pair.a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(result: Result<Vec<Item>, ApiError>) -> (Option<String>, String) {
        let error = result.unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        (error.field, error.message)
    }

    #[test]
    fn score_requests_parse_strings_and_conversations() {
        let body = json!({"items": [
            {"prompt": "Hi", "response": "Hello"},
            {"prompt": [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Hi"}], "response": "Hey", "extra": 1},
            {"prompt": "", "response": ""},
        ]});
        let items = parse_score_request(&body).unwrap();
        assert_eq!(items[0], (vec![Message::user("Hi")], "Hello".to_owned()));
        assert_eq!(items[1].0, vec![Message::new(Role::System, "Be kind"), Message::user("Hi")]);
        assert_eq!(items[2], (Vec::new(), String::new()));
        assert!(parse_score_request(&json!({"items": []})).unwrap().is_empty());
    }

    #[test]
    fn score_request_errors_name_the_field() {
        let cases = [
            (json!([1]), None, "expected a JSON object with a \"items\" list, found a list"),
            (json!({}), Some("items"), "items: missing"),
            (json!({"items": "x"}), Some("items"), "items: expected a list, found a string"),
            (json!({"items": [3]}), Some("items[0]"), "items[0]: expected an object, found a number"),
            (json!({"items": [{"response": "r"}]}), Some("items[0].prompt"), "items[0].prompt: missing"),
            (
                json!({"items": [{"prompt": "p", "response": "r"}, {"prompt": "p", "response": 5}]}),
                Some("items[1].response"),
                "items[1].response: expected a string, found a number",
            ),
            (
                json!({"items": [{"prompt": [{"role": "bot", "content": "c"}], "response": "r"}]}),
                Some("items[0].prompt[0].role"),
                "items[0].prompt[0].role: unknown role \"bot\" (system, user or assistant)",
            ),
            (
                json!({"items": [{"prompt": [{"role": "user"}], "response": "r"}]}),
                Some("items[0].prompt[0].content"),
                "items[0].prompt[0].content: missing",
            ),
            (
                json!({"items": [{"prompt": 1, "response": "r"}]}),
                Some("items[0].prompt"),
                "items[0].prompt: expected a string or a list of messages, found a number",
            ),
        ];
        for (body, field, message) in cases {
            assert_eq!(bad(parse_score_request(&body)), (field.map(str::to_owned), message.to_owned()), "{body}");
        }
    }

    #[test]
    fn get_reward_requests() {
        let body = json!({"query": ["q1 answer", "\n\nHuman: Hi\n\nAssistant: Hello"], "labels": ["x", "y"]});
        let items = parse_get_reward_request(&body).unwrap();
        assert_eq!(items[0], (Vec::new(), "q1 answer".to_owned()));
        assert_eq!(items[1], (vec![Message::user("Hi")], "Hello".to_owned()));
        let with_prompts = json!({"query": ["Q: hi A: yo"], "prompts": ["Q: hi "]});
        assert_eq!(
            parse_get_reward_request(&with_prompts).unwrap()[0],
            (vec![Message::user("Q: hi ")], "A: yo".to_owned())
        );
        assert_eq!(
            bad(parse_get_reward_request(&json!({"query": ["a"], "prompts": []}))),
            (Some("prompts".into()), "prompts: has 0 entries but query has 1".into())
        );
        assert_eq!(
            bad(parse_get_reward_request(&json!({"query": ["a", 2]}))),
            (Some("query[1]".into()), "query[1]: expected a string, found a number".into())
        );
        assert_eq!(bad(parse_get_reward_request(&json!({"queries": []}))).1, "query: missing");
    }

    #[test]
    fn queries_split_by_prompt_then_transcript_then_whole() {
        // The given prompt wins when it is a prefix.
        assert_eq!(
            split_query("<s>user: hi</s>ok", Some("<s>user: hi</s>")),
            (vec![Message::user("<s>user: hi</s>")], "ok".into())
        );
        // Not a prefix: the next rules apply.
        assert_eq!(split_query("whole text", Some("other")), (Vec::new(), "whole text".into()));
        // Multi-turn transcripts, with or without the leading blank line.
        let (prompt, response) = split_query("Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d", None);
        assert_eq!(prompt, vec![Message::user("a"), Message::assistant("b"), Message::user("c")]);
        assert_eq!(response, "d");
        // A transcript that ends with a Human turn is not one: scored whole.
        let odd = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c";
        assert_eq!(split_query(odd, None), (Vec::new(), odd.into()));
    }

    /// Echoes the length of each response; fails on "fail"; NaN on "nan".
    struct Echo;

    impl RewardScorer for Echo {
        fn score(&self, items: &[Item]) -> Result<Vec<f32>, String> {
            items
                .iter()
                .map(|(_, r)| match r.as_str() {
                    "fail" => Err("cannot score \"fail\"".to_owned()),
                    "nan" => Ok(f32::NAN),
                    _ => Ok(r.len() as f32),
                })
                .collect()
        }
        fn model_id(&self) -> String {
            "echo".into()
        }
    }

    #[test]
    fn chunks_are_checked() {
        let items: Vec<Item> = ["a", "bb", "ccc"].iter().map(|r| (Vec::new(), r.to_string())).collect();
        assert_eq!(score_in_chunks(&Echo, &items, 2).unwrap(), [1.0, 2.0, 3.0]);
        let failing = vec![(Vec::new(), "fail".to_owned())];
        assert_eq!(score_in_chunks(&Echo, &failing, 2).unwrap_err(), "cannot score \"fail\"");
        let nan = vec![(Vec::new(), "nan".to_owned())];
        assert!(score_in_chunks(&Echo, &nan, 2).unwrap_err().contains("non-finite reward (NaN)"));
    }

    #[test]
    fn zero_options_are_refused() {
        let opts = ServeOptions { max_batch: 0, ..ServeOptions::default() };
        assert_eq!(opts.check().unwrap_err().to_string(), "invalid option: --max-batch must be at least 1");
    }

    #[test]
    fn requests_share_a_batch_one_item_each_in_turn() {
        // A huge request first does not take the whole batch: the small ones ride along.
        assert_eq!(share(&[4096, 1, 2], 8), vec![5, 1, 2]);
        assert_eq!(share(&[4096], 8), vec![8]);
        // More requests than slots: the first ones get one each (the worker puts the
        // others first next time).
        assert_eq!(share(&[3, 3, 3, 3], 2), vec![1, 1, 0, 0]);
        assert_eq!(share(&[1, 1], 32), vec![1, 1]);
        assert_eq!(share(&[], 32), Vec::<usize>::new());
    }
}
