//! The sandbox: one shared wasmtime `Engine`, compiled and verified plugins, and pools of
//! instances (one store each) that scoring workers borrow.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use semver::Version;
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use super::abi;
use super::bindings::v0_1::{Pack, PackPre, safety::rules::types as wit};
use super::cache;
use super::host::{Grants, HostState, JudgeMode, LogLevel, LogLine, Prefetched};
use super::limits::{LimitExceeded, Limiter, SandboxLimits};
use super::{Failure, FailureKind, PluginError, RuleMeta, Verdict};
use crate::data::{Role, Sample};
use crate::judge::Judge;

/// How often the epoch advances; the wall-clock deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most judge questions the dry run of [`Plugin::evaluate_many`] notes per rule; a
/// pack that asks more gets the rest answered one by one, as without the dry run.
const QUESTIONS_NOTED_PER_RULE: usize = 4;

/// After this many samples in a row whose dry run noted no judge question, a pack's dry
/// runs stop (see [`DryRuns`]).
const QUIET_SAMPLES_BEFORE_SKIPPING: usize = 8;

/// Whether [`Plugin::evaluate_many`] still makes its dry runs. A dry run costs a second
/// evaluation of the sample's rules and gains only when the pack asks the judge, so after
/// [`QUIET_SAMPLES_BEFORE_SKIPPING`] samples in a row whose dry run noted no question,
/// later samples skip it, until a sample evaluated without one asks the judge after all:
/// then dry runs start again (and the count with them). Skipping never changes a verdict
/// (the real calls ask the judge whatever the dry run noted); it can only lose batching.
/// Shared by the threads that evaluate with the plugin; a race between them costs at most
/// a dry run more or less.
#[derive(Debug, Default)]
struct DryRuns {
    /// Samples in a row whose dry run noted no question.
    quiet: AtomicUsize,
}

impl DryRuns {
    /// Whether the next sample gets a dry run.
    fn wanted(&self) -> bool {
        self.quiet.load(Ordering::Relaxed) < QUIET_SAMPLES_BEFORE_SKIPPING
    }

    /// After a sample's dry run, which noted `questions` questions.
    fn noted(&self, questions: usize) {
        if questions == 0 {
            self.quiet.fetch_add(1, Ordering::Relaxed);
        } else {
            self.quiet.store(0, Ordering::Relaxed);
        }
    }

    /// After a sample evaluated without a dry run, whose real calls asked the judge
    /// `judge_calls` times.
    fn skipped(&self, judge_calls: u32) {
        if judge_calls > 0 {
            self.quiet.store(0, Ordering::Relaxed);
        }
    }
}

/// Advances the engine's epoch in the background so that wall-clock deadlines fire.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Everything needed to load a plugin: where it is, what it must hash to, and what it
/// is given.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// The pack's name in rules.toml.
    pub name: String,
    pub path: PathBuf,
    /// Expected sha256 (lowercase hex). `None` skips the pin (only for `rules inspect` of
    /// a file given on the command line).
    pub sha256: Option<String>,
    pub config: Vec<(String, String)>,
    pub grants: Grants,
}

/// The wasmtime engine and linker shared by every plugin of a job.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
    cache_dir: Option<PathBuf>,
    judge: Option<Arc<dyn Judge>>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine with the sandbox settings: fuel, epoch interruption, a capped wasm
    /// stack, and nothing linked but the `safety:rules` host interface.
    pub fn new(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
        judge: Option<Arc<dyn Judge>>,
    ) -> Result<Runtime, PluginError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_wasm_stack_kib as usize * 1024)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:?}")))?;
        let mut linker = Linker::new(&engine);
        Pack::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| PluginError::Engine(format!("{e:?}")))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime { engine, linker, limits, cache_dir, judge, _ticker: ticker })
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// The judge behind the `judge` import, if the job has one.
    pub fn judge(&self) -> Option<&Arc<dyn Judge>> {
        self.judge.as_ref()
    }

    /// Verifies, compiles (or loads from cache), instantiates once to read the rules, and
    /// returns the plugin ready for scoring.
    pub fn load(&self, spec: &PluginSpec) -> Result<Arc<Plugin>, PluginError> {
        let path = &spec.path;
        let bytes = crate::fsio::read(path).map_err(|source| PluginError::Io { path: path.clone(), source })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = &spec.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(PluginError::HashMismatch {
                path: path.clone(),
                expected: expected.clone(),
                actual: sha256,
                pinned_by: "the job".into(),
            });
        }
        let header = abi::check(&bytes).map_err(|source| PluginError::Abi { path: path.clone(), source })?;
        let (component, from_cache) = cache::load_or_compile(&self.engine, self.cache_dir.as_deref(), &sha256, &bytes)
            .map_err(|e| PluginError::Compile { path: path.clone(), message: format!("{e:#}") })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PackPre::new)
            .map_err(|e| PluginError::Link { path: path.clone(), message: format!("{e:#}") })?;

        let mut plugin = Plugin {
            name: spec.name.clone(),
            path: path.clone(),
            sha256,
            abi: header.abi,
            from_cache,
            rules: Vec::new(),
            pre,
            config: spec.config.clone(),
            grants: spec.grants,
            limits: self.limits.clone(),
            judge: self.judge.clone(),
            timeout_ticks: self.limits.timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1),
            idle: Mutex::new(Vec::new()),
            recorders: Mutex::new(Vec::new()),
            dry_runs: DryRuns::default(),
        };
        let mut instance = plugin
            .instantiate()
            .map_err(|f| PluginError::Instantiate { path: path.clone(), message: f.to_string() })?;
        plugin.rules = instance
            .read_rules(&self.limits, plugin.timeout_ticks)
            .map_err(|message| PluginError::Metadata { path: path.clone(), message })?;
        plugin.idle.lock().expect("fresh mutex").push(instance);
        Ok(Arc::new(plugin))
    }
}

/// A verified, compiled rule pack and a pool of its live instances.
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the file as loaded.
    pub sha256: String,
    pub abi: Version,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    pub rules: Vec<RuleMeta>,
    pre: PackPre<HostState>,
    config: Vec<(String, String)>,
    grants: Grants,
    limits: SandboxLimits,
    judge: Option<Arc<dyn Judge>>,
    timeout_ticks: u64,
    idle: Mutex<Vec<Instance>>,
    /// Instances that only ever make dry runs (their state never reaches a live call).
    recorders: Mutex<Vec<Instance>>,
    /// Whether dry runs are still worth making.
    dry_runs: DryRuns,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// The result of one `evaluate` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub result: Result<Verdict, Failure>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    pub judge_calls: u32,
}

impl Plugin {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rule(&self, id: &str) -> Option<&RuleMeta> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// A fresh instance in its own store, configured with the pack's config.
    fn instantiate(&self) -> Result<Instance, Failure> {
        let state = HostState::new(
            Limiter::new(&self.limits),
            self.grants,
            self.judge.clone(),
            self.limits.max_log_bytes_per_call,
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        let mut instance = Instance { store, pack: None, poisoned: false };
        instance.arm(self.limits.fuel_per_call, self.timeout_ticks, None);
        let pack = self
            .pre
            .instantiate(&mut instance.store)
            .map_err(|e| classify(&e, &instance.store.data().logs, &self.limits))?;
        instance.arm(self.limits.fuel_per_call, self.timeout_ticks, None);
        match pack.safety_rules_rule_pack().call_configure(&mut instance.store, &self.config) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(Failure {
                    kind: FailureKind::Config,
                    message: format!("configure refused the config: {message}"),
                });
            }
            Err(trap) => return Err(classify(&trap, &instance.store.data().logs, &self.limits)),
        }
        instance.pack = Some(pack);
        Ok(instance)
    }

    /// Evaluates `rule_id` on `sample` in a pooled instance. A trap fails only this call:
    /// the trapped instance is dropped (wasmtime will not re-enter it) and a fresh one is
    /// made on the next call.
    pub fn evaluate(&self, rule_id: &str, sample: &Arc<Sample>) -> Evaluation {
        self.evaluate_many(&[rule_id], sample).pop().expect("one rule in, one evaluation out")
    }

    /// Evaluates several rules of this pack on one sample, in order, in one borrowed
    /// instance: a pack that analyses a sample once and caches it across its rules keeps
    /// that cache warm. After a trap the next rule gets a fresh instance.
    ///
    /// **Batched judge questions.** The WIT `judge` import takes one question, but a judge
    /// that [batches](Judge::batches) answers many questions about one sample in one
    /// forward pass for little more than the cost of one. So when the pack may ask the
    /// judge, its rules first run as a *dry run* in a separate instance whose `judge`
    /// notes each question and answers a placeholder; the noted questions are then asked
    /// together ([`Judge::ask_many`]) and the real calls take their answers from that
    /// batch. A pack cannot tell the difference: it is deterministic (the sandbox gives it
    /// no clock or randomness), the dry run's instance and results are thrown away, and a
    /// question the real call asks that the dry run did not (one that depends on an
    /// earlier answer) goes to the judge as before. Answers equal one-by-one answers up
    /// to floating-point rounding.
    ///
    /// A pack whose dry runs note no question on [`QUIET_SAMPLES_BEFORE_SKIPPING`] samples
    /// in a row stops getting them, until a sample's real calls ask the judge (see
    /// [`DryRuns`]): a pack granted the judge that never asks it pays for its dry runs
    /// only on its first samples.
    pub fn evaluate_many(&self, rule_ids: &[&str], sample: &Arc<Sample>) -> Vec<Evaluation> {
        let batching = self.batching_judge().is_some();
        let dry_run = batching && self.dry_runs.wanted();
        let prefetched = if dry_run { self.prefetch(rule_ids, sample) } else { None };
        let mut instance: Option<Instance> = None;
        let mut evaluations = Vec::with_capacity(rule_ids.len());
        for rule_id in rule_ids {
            let current = match instance.take() {
                Some(live) => live,
                None => match self.checkout() {
                    Ok(live) => live,
                    Err(failure) => {
                        evaluations.push(Evaluation {
                            result: Err(failure),
                            logs: Vec::new(),
                            logs_dropped: 0,
                            judge_calls: 0,
                        });
                        continue;
                    }
                },
            };
            let mut current = current;
            current.store.data_mut().prefetched = prefetched.clone();
            evaluations.push(current.evaluate(rule_id, sample, &self.limits, self.timeout_ticks));
            current.store.data_mut().prefetched = None;
            if !current.poisoned {
                instance = Some(current);
            }
        }
        if let Some(live) = instance {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(live);
        }
        if batching && !dry_run {
            self.dry_runs.skipped(evaluations.iter().map(|e| e.judge_calls).sum());
        }
        evaluations
    }

    /// The judge, when this pack may ask it and it [batches](Judge::batches).
    fn batching_judge(&self) -> Option<&Arc<dyn Judge>> {
        self.judge.as_ref().filter(|j| self.grants.judge && j.batches())
    }

    /// The dry run of [`evaluate_many`](Self::evaluate_many) and the batch it feeds: the
    /// judge's answers to the questions the pack asks about `sample`, or `None` when there
    /// is nothing to batch (no judge grant, a judge that does not batch, fewer than two
    /// questions). A dry run that fails just notes fewer questions. Tells [`DryRuns`] how
    /// many questions it noted.
    fn prefetch(&self, rule_ids: &[&str], sample: &Arc<Sample>) -> Option<Arc<Prefetched>> {
        let judge = self.batching_judge()?;
        let mut questions: Vec<String> = Vec::new();
        let mut recorder: Option<Instance> = None;
        for rule_id in rule_ids {
            let mut current = match recorder.take() {
                Some(r) => r,
                None => match self.checkout_recorder() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let _dry_run = current.evaluate(rule_id, sample, &self.limits, self.timeout_ticks);
            for question in current.store.data_mut().recorded.drain(..) {
                if !questions.contains(&question) {
                    questions.push(question);
                }
            }
            if !current.poisoned {
                recorder = Some(current);
            }
        }
        if let Some(r) = recorder {
            self.recorders.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }
        self.dry_runs.noted(questions.len());
        if questions.len() < 2 {
            return None;
        }
        let asked: Vec<&str> = questions.iter().map(String::as_str).collect();
        let answers = judge.ask_many(sample, &asked);
        let answers = answers.into_iter().map(|a| a.map_err(|e| e.to_string()));
        Some(Arc::new(questions.into_iter().zip(answers).collect()))
    }

    /// An instance for dry runs: from their own pool, never from the live one.
    fn checkout_recorder(&self) -> Result<Instance, Failure> {
        let pooled = self.recorders.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => {
                let mut instance = self.instantiate()?;
                let state = instance.store.data_mut();
                state.mode = JudgeMode::Record;
                state.max_recorded = QUESTIONS_NOTED_PER_RULE;
                Ok(instance)
            }
        }
    }

    /// An idle instance from the pool, or a new one.
    fn checkout(&self) -> Result<Instance, Failure> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => self.instantiate(),
        }
    }
}

/// One live instance of a pack, in its own store.
struct Instance {
    store: Store<HostState>,
    pack: Option<Pack>,
    /// Set after a trap; the instance must not be called again.
    poisoned: bool,
}

impl Instance {
    /// Refuels and re-arms the deadline before a call.
    fn arm(&mut self, fuel: u64, ticks: u64, sample: Option<Arc<Sample>>) {
        self.store.data_mut().begin_call(sample);
        // Setting fuel only fails when fuel is disabled, which the runtime never does.
        let _ = self.store.set_fuel(fuel);
        self.store.set_epoch_deadline(ticks);
        self.store.epoch_deadline_trap();
    }

    fn read_rules(&mut self, limits: &SandboxLimits, ticks: u64) -> Result<Vec<RuleMeta>, String> {
        self.arm(limits.fuel_per_call, ticks, None);
        let pack = self.pack.as_ref().expect("instances are configured before use");
        let infos = pack.safety_rules_rule_pack().call_rules(&mut self.store).map_err(|e| {
            self.poisoned = true;
            classify(&e, &self.store.data().logs, limits).to_string()
        })?;
        validate_rules(infos, limits)
    }

    fn evaluate(&mut self, rule_id: &str, sample: &Arc<Sample>, limits: &SandboxLimits, ticks: u64) -> Evaluation {
        self.arm(limits.fuel_per_call, ticks, Some(sample.clone()));
        let wit_sample = to_wit(sample);
        let pack = self.pack.as_ref().expect("instances are configured before use");
        let outcome = pack.safety_rules_rule_pack().call_evaluate(&mut self.store, rule_id, &wit_sample);
        let state = self.store.data_mut();
        state.sample = None;
        let result = match outcome {
            Ok(Ok(verdict)) => check_verdict(verdict, limits),
            Ok(Err(error)) => Err(rule_error(error)),
            Err(trap) => {
                self.poisoned = true;
                Err(classify(&trap, &state.logs, limits))
            }
        };
        let state = self.store.data_mut();
        Evaluation {
            result,
            logs: std::mem::take(&mut state.logs),
            logs_dropped: state.logs_dropped,
            judge_calls: state.judge_calls,
        }
    }
}

fn to_wit(sample: &Sample) -> wit::Sample {
    wit::Sample {
        prompt: sample
            .prompt
            .iter()
            .map(|m| wit::Message {
                role: match m.role {
                    Role::System => wit::Role::System,
                    Role::User => wit::Role::User,
                    Role::Assistant => wit::Role::Assistant,
                },
                content: m.content.clone(),
            })
            .collect(),
        response: sample.response.clone(),
    }
}

/// Accepts a verdict only if every number is finite and in range and the rationale is
/// within the cap.
fn check_verdict(v: wit::Verdict, limits: &SandboxLimits) -> Result<Verdict, Failure> {
    let malformed = |message: String| Err(Failure { kind: FailureKind::Malformed, message });
    if !v.score.is_finite() || !(-1.0..=1.0).contains(&v.score) {
        return malformed(format!("score {} is not a number in [-1, 1]", v.score));
    }
    if !v.relevance.is_finite() || !(0.0..=1.0).contains(&v.relevance) {
        return malformed(format!("relevance {} is not a number in [0, 1]", v.relevance));
    }
    if let Some(r) = &v.rationale
        && r.len() > limits.max_rationale_bytes
    {
        return malformed(format!("rationale is {} bytes; the limit is {}", r.len(), limits.max_rationale_bytes));
    }
    Ok(Verdict { score: v.score, relevance: v.relevance, rationale: v.rationale })
}

fn rule_error(error: wit::RuleError) -> Failure {
    let (kind, message) = match error {
        wit::RuleError::UnknownRule(id) => (FailureKind::Malformed, format!("the pack does not know rule id {id:?}")),
        wit::RuleError::InvalidConfig(m) => (FailureKind::Config, m),
        wit::RuleError::JudgeFailed(m) => (FailureKind::Judge, m),
        wit::RuleError::Internal(m) => (FailureKind::RuleError, m),
    };
    Failure { kind, message }
}

/// Turns a trap into a classified failure: timeout (fuel or deadline), out of memory,
/// panic (with the message the SDK's panic hook logged), or crash.
fn classify(error: &wasmtime::Error, logs: &[LogLine], limits: &SandboxLimits) -> Failure {
    if let Some(limit) = error.chain().find_map(|e| e.downcast_ref::<LimitExceeded>()) {
        return Failure { kind: FailureKind::OutOfMemory, message: limit.to_string() };
    }
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::OutOfFuel) => Failure {
            kind: FailureKind::Timeout,
            message: format!("ran out of fuel ({} units per call)", limits.fuel_per_call),
        },
        Some(Trap::Interrupt) => {
            Failure { kind: FailureKind::Timeout, message: format!("exceeded the {} ms deadline", limits.timeout_ms) }
        }
        Some(Trap::UnreachableCodeReached) => {
            let panic = logs.iter().rev().find(|l| l.level == LogLevel::Error && l.message.starts_with("panic"));
            Failure {
                kind: FailureKind::Panic,
                message: panic.map_or_else(|| "aborted (unreachable executed)".to_string(), |l| l.message.clone()),
            }
        }
        Some(Trap::StackOverflow) => Failure { kind: FailureKind::Crash, message: "wasm stack overflow".into() },
        Some(trap) => Failure { kind: FailureKind::Crash, message: trap.to_string() },
        None => Failure { kind: FailureKind::Crash, message: format!("{error:#}") },
    }
}

fn validate_rules(infos: Vec<wit::RuleInfo>, limits: &SandboxLimits) -> Result<Vec<RuleMeta>, String> {
    if infos.is_empty() {
        return Err("the pack exports no rules".into());
    }
    if infos.len() > limits.max_rules_per_pack {
        return Err(format!("the pack exports {} rules; the limit is {}", infos.len(), limits.max_rules_per_pack));
    }
    let mut rules: Vec<RuleMeta> = Vec::with_capacity(infos.len());
    for info in infos {
        let fields = [&info.id, &info.title, &info.description, &info.version];
        if fields.iter().any(|f| f.len() > limits.max_metadata_bytes)
            || info.categories.iter().map(String::len).sum::<usize>() > limits.max_metadata_bytes
        {
            return Err(format!(
                "rule {:?} has metadata longer than {} bytes",
                truncate(&info.id),
                limits.max_metadata_bytes
            ));
        }
        if info.id.is_empty() || !info.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            return Err(format!(
                "rule id {:?} must be non-empty ASCII letters, digits, '-', '_', '.' or ':'",
                truncate(&info.id)
            ));
        }
        if rules.iter().any(|r| r.id == info.id) {
            return Err(format!("rule id {:?} is exported twice", info.id));
        }
        rules.push(RuleMeta {
            id: info.id,
            title: info.title,
            description: info.description,
            version: info.version,
            categories: info.categories,
        });
    }
    Ok(rules)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_runs_stop_after_quiet_samples_in_a_row_and_start_again_when_the_judge_is_asked() {
        let dry_runs = DryRuns::default();
        // A question resets the count: only quiet samples *in a row* count.
        for _ in 1..QUIET_SAMPLES_BEFORE_SKIPPING {
            assert!(dry_runs.wanted());
            dry_runs.noted(0);
        }
        dry_runs.noted(1);
        for _ in 0..QUIET_SAMPLES_BEFORE_SKIPPING {
            assert!(dry_runs.wanted());
            dry_runs.noted(0);
        }
        assert!(!dry_runs.wanted(), "skipped after {QUIET_SAMPLES_BEFORE_SKIPPING} quiet samples");
        dry_runs.skipped(0);
        assert!(!dry_runs.wanted(), "a sample that asked nothing keeps them skipped");
        dry_runs.skipped(2);
        assert!(dry_runs.wanted(), "a sample that asked the judge brings them back");
        dry_runs.noted(0);
        assert!(dry_runs.wanted(), "and the count starts again");
    }
}
