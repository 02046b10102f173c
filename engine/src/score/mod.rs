//! Scoring: every unique sample under every enabled rule, in parallel, streamed to
//! `scores.jsonl`.
//!
//! The output is canonical — records sorted by sample hash, then rule id — and written
//! chunk by chunk in that order. So a run killed at any moment (even `kill -9`) leaves a
//! valid prefix plus at most one torn line; the rerun keeps the prefix, drops the torn
//! line and carries on, and the finished file is byte-for-byte the file an uninterrupted
//! run writes. Shards (`--shard i/n`, chosen by sample hash) merge into that same file.
//!
//! A rule that fails `quarantine_after` times in a row (in canonical order) is
//! quarantined: its remaining evaluations are recorded as `quarantined` and not run. The
//! decision is the one a strictly sequential run would make, whatever the chunking and the
//! thread count: while a rule's last `k` outcomes are failures, at most
//! `quarantine_after − k` of its evaluations run at once (see the waves in [`score`]), so
//! a rule that always fails runs exactly `quarantine_after` times. The price is less
//! parallelism per rule with a small `quarantine_after`.

mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

pub use record::{Key, Outcome, ScoreRecord, ValidPrefix, read_strict, read_strict_numbered, read_valid_prefix};

use crate::data::{Sample, SampleHash};
use crate::plugin::{FailureKind, LogLevel, Registry};

/// Samples per chunk: the unit of parallel work and of writing.
const CHUNK: usize = 32;

/// Which share of the samples this process scores: those whose hash is `index` modulo
/// `count`. Shards are disjoint and cover everything, whatever the input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn contains(&self, hash: &SampleHash) -> bool {
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("expected INDEX/COUNT such as 0/4, found {s:?}"))?;
        let index: u32 = i.trim().parse().map_err(|_| format!("shard index {i:?} is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= INDEX < COUNT"));
        }
        Ok(Shard { index, count })
    }
}

#[derive(Clone, Debug)]
pub struct ScoreOptions {
    pub out: PathBuf,
    pub shard: Shard,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Consecutive failures that quarantine a rule; 0 never quarantines.
    pub quarantine_after: u32,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Score only these rules per sample (by rule id); `None` scores every rule on every
    /// sample. The Rule Adapter uses it to ask the judge only about the rules it predicts;
    /// a sample missing from the map gets no evaluations.
    pub only: Option<Arc<HashMap<SampleHash, BTreeSet<String>>>>,
}

/// What a scoring run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScoreSummary {
    pub samples: usize,
    pub rules: usize,
    /// Evaluations found already done in the output file (resume).
    pub resumed: usize,
    /// Evaluations taken from an earlier output with a different layout.
    pub reused: usize,
    pub computed: usize,
    pub ok: usize,
    pub failures: BTreeMap<String, usize>,
    /// Rules quarantined, with the last failure before quarantine.
    pub quarantined: BTreeMap<String, String>,
    pub plugin_warnings: usize,
    #[serde(skip)]
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: not a score record: {message}", path.display())]
    Corrupt { path: PathBuf, line: usize, message: String },
    /// The output of `engine score` holds something other than score records: it is not
    /// resumed (nor overwritten).
    #[error("{}:{line}: not a scores file (this line is not a score record: {message}); refusing to overwrite it — pass another --out, or delete the file if it is a scores file you no longer need", path.display())]
    NotScores { path: PathBuf, line: usize, message: String },
    /// Two records of one key in one file disagree (see [`read_strict`]).
    #[error("{}:{first} and line {second}: two different results for sample {} rule {} (rule hash {}); a scores file holds one per key — rescore, or remove the wrong line", path.display(), key.0, key.1, key.2)]
    Contradiction { path: PathBuf, first: usize, second: usize, key: Key },
    #[error("sample {} rule {}: {} and {} disagree on the result; were they made by the same job?", key.0, key.1, first.display(), second.display())]
    Conflict { key: Key, first: PathBuf, second: PathBuf },
    #[error(transparent)]
    SameFile(#[from] crate::fsio::SameFileError),
    #[error("cannot start {threads} scoring threads: {message}")]
    Threads { threads: usize, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScoreError + '_ {
    move |source| ScoreError::Io { path: path.to_path_buf(), source }
}

/// Where an interrupted re-layout keeps the old records until the run completes.
fn previous_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    out.with_file_name(name)
}

/// Scores `samples` under every rule of `registry` into `opts.out`, resuming whatever an
/// earlier run of the same job left there.
pub fn score(registry: &Registry, samples: &[Sample], opts: &ScoreOptions) -> Result<ScoreSummary, ScoreError> {
    let started = Instant::now();
    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScoreError::Threads { threads, message: e.to_string() })?;

    // Canonical order: this shard's unique samples by hash; rules by id (registry order).
    let mut order: Vec<(SampleHash, Arc<Sample>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for sample in samples {
        let hash = sample.hash();
        if opts.shard.contains(&hash) && seen.insert(hash) {
            order.push((hash, Arc::new(sample.clone())));
        }
    }
    order.sort_by_key(|(hash, _)| *hash);
    let hexes: Vec<String> = order.iter().map(|(h, _)| h.to_hex()).collect();
    let rules = &registry.rules;
    let key_of = |sample: usize, rule: usize| -> Key {
        (hexes[sample].clone(), rules[rule].meta.id.clone(), rules[rule].rule_hash.clone())
    };
    // The cells to evaluate, in canonical order (sample, then rule), and where each
    // sample's cells start: every rule on every sample, or the `only` subset.
    let mut cells: Vec<(usize, usize)> = Vec::with_capacity(order.len() * rules.len());
    let mut first_cell = Vec::with_capacity(order.len() + 1);
    for (s, (hash, _)) in order.iter().enumerate() {
        first_cell.push(cells.len());
        let wanted = opts.only.as_ref().map(|only| only.get(hash));
        for (r, rule) in rules.iter().enumerate() {
            if wanted.is_none_or(|set| set.is_some_and(|set| set.contains(&rule.meta.id))) {
                cells.push((s, r));
            }
        }
    }
    first_cell.push(cells.len());
    let total = cells.len();

    // What earlier runs left: the valid prefix of the output, plus any records parked in
    // `.prev` by an interrupted re-layout.
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let prev_path = previous_path(&opts.out);
    let existing = read_valid_prefix(&opts.out)?;
    let is_prefix = existing.records.len() <= total
        && existing.records.iter().enumerate().all(|(i, r)| r.key() == key_of(cells[i].0, cells[i].1));
    let mut cache: HashMap<Key, ScoreRecord> =
        read_valid_prefix(&prev_path)?.records.into_iter().map(|r| (r.key(), r)).collect();
    let start;
    let done: Vec<ScoreRecord>;
    if is_prefix {
        start = existing.records.len();
        done = existing.records;
        let file = OpenOptions::new().write(true).open(&opts.out);
        if let Ok(file) = file {
            file.set_len(existing.bytes).map_err(io(&opts.out))?;
        }
    } else {
        // Another job's layout (rules or samples changed): park its records in `.prev`,
        // reuse those that still apply, and write the file afresh.
        let mut parked = OpenOptions::new().create(true).append(true).open(&prev_path).map_err(io(&prev_path))?;
        for record in &existing.records {
            parked.write_all(record.to_line().as_bytes()).map_err(io(&prev_path))?;
        }
        parked.sync_all().map_err(io(&prev_path))?;
        cache.extend(existing.records.into_iter().map(|r| (r.key(), r)));
        std::fs::write(&opts.out, b"").map_err(io(&opts.out))?;
        start = 0;
        done = Vec::new();
    }
    let mut out = OpenOptions::new().append(true).create(true).open(&opts.out).map_err(io(&opts.out))?;

    let bar = if opts.progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    if opts.progress {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    bar.set_style(
        ProgressStyle::with_template("scoring {bar:32.cyan/blue} {pos}/{len} evaluations  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    bar.set_position(start as u64);
    let mut log = crate::progress::LogLines::new(opts.progress);

    let mut summary = ScoreSummary { samples: order.len(), rules: rules.len(), resumed: start, ..Default::default() };
    let mut streak = vec![0u32; rules.len()];
    let mut quarantined: Vec<Option<String>> = vec![None; rules.len()];
    let mut warnings_shown = 0usize;
    // Applies rule `r`'s known outcomes from its cursor on, in canonical order: a failure
    // lengthens its streak (and at `quarantine_after` quarantines it), a success ends the
    // streak, and once quarantined its cells not yet known are filled as `quarantined`.
    // Stops at the first cell still to be evaluated, and returns the rule's streak.
    let mut settle =
        |records: &mut [Option<ScoreRecord>], first_key: usize, cells_of_r: &[usize], cursor: &mut usize, r: usize| {
            while let Some(&i) = cells_of_r.get(*cursor) {
                let slot = &mut records[i - first_key];
                if slot.is_none() {
                    let Some(reason) = &quarantined[r] else { break };
                    let (sample, rule, rule_hash) = key_of(cells[i].0, r);
                    *slot = Some(ScoreRecord {
                        sample,
                        rule,
                        rule_hash,
                        pack: registry.plugin_of(&rules[r]).name.clone(),
                        judge_calls: 0,
                        outcome: Outcome::Error { kind: FailureKind::Quarantined, message: reason.clone() },
                    });
                }
                let record = slot.as_ref().expect("filled above");
                match record.outcome.failure_kind() {
                    None => streak[r] = 0,
                    Some(FailureKind::Quarantined) => {}
                    Some(kind) => {
                        streak[r] += 1;
                        if opts.quarantine_after > 0 && streak[r] >= opts.quarantine_after && quarantined[r].is_none() {
                            let Outcome::Error { message, .. } = &record.outcome else { unreachable!() };
                            let reason =
                                format!("quarantined after {} failures in a row; last: {kind}: {message}", streak[r]);
                            bar.suspend(|| eprintln!("warning: rule {}: {reason}", rules[r].meta.id));
                            quarantined[r] = Some(reason);
                        }
                    }
                }
                *cursor += 1;
            }
            streak[r]
        };

    for chunk_start in (0..order.len()).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(order.len());
        let first_key = first_cell[chunk_start];
        let last_key = first_cell[chunk_end];
        // Known up front: records resumed from the output or reused from an earlier layout.
        let mut records: Vec<Option<ScoreRecord>> = vec![None; last_key - first_key];
        // Each rule's cells in this chunk, in canonical order, and how far its quarantine
        // bookkeeping has got through them.
        let mut cells_of: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
        let mut cursor = vec![0usize; rules.len()];
        for i in first_key..last_key {
            let (s, r) = cells[i];
            cells_of[r].push(i);
            if i < start {
                records[i - first_key] = Some(done[i].clone());
            } else if let Some(hit) = cache.remove(&key_of(s, r)) {
                summary.reused += 1;
                records[i - first_key] = Some(hit);
            }
        }

        // Waves: evaluate in parallel only what a strictly sequential run (one cell at a
        // time, in canonical order) would evaluate too. A rule whose last `streak` outcomes
        // failed may have at most `quarantine_after − streak` evaluations in flight: were
        // they all to fail, the last of them is the one that quarantines it, so nothing
        // past quarantine runs, whatever the chunk size or thread count. Outcomes are then
        // applied per rule in canonical order, so the output (which cells are quarantined)
        // is the sequential run's: deterministic, and a resumed run writes the same bytes.
        loop {
            let mut todo: Vec<usize> = Vec::new();
            for r in 0..rules.len() {
                // Worst case: every evaluation in flight fails.
                let mut worst = settle(&mut records, first_key, &cells_of[r], &mut cursor[r], r);
                for &i in &cells_of[r][cursor[r]..] {
                    if opts.quarantine_after > 0 && worst >= opts.quarantine_after {
                        break;
                    }
                    match records[i - first_key].as_ref().map(|rec| rec.outcome.failure_kind()) {
                        None => {
                            todo.push(i);
                            worst += 1;
                        }
                        Some(None) => worst = 0,
                        Some(Some(FailureKind::Quarantined)) => {}
                        Some(Some(_)) => worst += 1,
                    }
                }
            }
            if todo.is_empty() {
                break;
            }
            todo.sort_unstable();
            for (i, record, warnings) in evaluate_cells(&pool, registry, &order, &cells, &todo, &key_of, &bar) {
                summary.computed += 1;
                summary.plugin_warnings += warnings.len();
                for warning in warnings {
                    if warnings_shown < 20 {
                        bar.suspend(|| eprintln!("warning: plugin log: {warning}"));
                        warnings_shown += 1;
                    }
                }
                records[i - first_key] = Some(record);
            }
        }

        let mut text = String::new();
        for (offset, record) in records.iter().enumerate() {
            let record = record.as_ref().expect("every key of the chunk is filled");
            let i = first_key + offset;
            if i >= start {
                text.push_str(&record.to_line());
                bar.set_position((i + 1) as u64);
            }
            match record.outcome.failure_kind() {
                None => summary.ok += 1,
                Some(kind) => *summary.failures.entry(kind.to_string()).or_default() += 1,
            }
        }
        out.write_all(text.as_bytes()).map_err(io(&opts.out))?;
        out.flush().map_err(io(&opts.out))?;
        log.tick("scoring (evaluations)", bar.position(), total as u64);
    }
    out.sync_all().map_err(io(&opts.out))?;
    bar.finish_and_clear();
    if prev_path.exists() {
        std::fs::remove_file(&prev_path).map_err(io(&prev_path))?;
    }
    for (r, reason) in quarantined.iter().enumerate() {
        if let Some(reason) = reason {
            summary.quarantined.insert(rules[r].meta.id.clone(), reason.clone());
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Evaluates the cells `todo` (indices into `cells`, ascending) on the pool: one task per
/// sample, whose rules run pack by pack, each pack in one borrowed instance (see
/// `Plugin::evaluate_many`). Returns each cell's record and the plugin's warnings.
fn evaluate_cells(
    pool: &rayon::ThreadPool,
    registry: &Registry,
    order: &[(SampleHash, Arc<Sample>)],
    cells: &[(usize, usize)],
    todo: &[usize],
    key_of: &(impl Fn(usize, usize) -> Key + Sync),
    bar: &ProgressBar,
) -> Vec<(usize, ScoreRecord, Vec<String>)> {
    let rules = &registry.rules;
    let mut by_sample: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in todo {
        let s = cells[i].0;
        match by_sample.last_mut() {
            Some((last, keys)) if *last == s => keys.push(i),
            _ => by_sample.push((s, vec![i])),
        }
    }
    pool.install(|| {
        by_sample
            .par_iter()
            .flat_map_iter(|(s, keys)| {
                // Results are placed by key, so the order of evaluation is free: group the
                // sample's rules by pack.
                let mut keys = keys.clone();
                keys.sort_by_key(|&i| (rules[cells[i].1].plugin, i));
                let mut out = Vec::with_capacity(keys.len());
                let mut start = 0;
                while start < keys.len() {
                    // A run of keys whose rules belong to the same pack.
                    let plugin_index = rules[cells[keys[start]].1].plugin;
                    let mut end = start + 1;
                    while end < keys.len() && rules[cells[keys[end]].1].plugin == plugin_index {
                        end += 1;
                    }
                    let run = &keys[start..end];
                    let plugin = &registry.plugins[plugin_index];
                    let ids: Vec<&str> = run.iter().map(|&i| rules[cells[i].1].meta.id.as_str()).collect();
                    let evaluations = plugin.evaluate_many(&ids, &order[*s].1);
                    for (&i, evaluation) in run.iter().zip(evaluations) {
                        let rule = &rules[cells[i].1];
                        let warnings = evaluation
                            .logs
                            .iter()
                            .filter(|l| matches!(l.level, LogLevel::Warn | LogLevel::Error))
                            .map(|l| format!("{} ({}): {}", rule.meta.id, plugin.name, l.message))
                            .collect();
                        let (sample, rule_id, rule_hash) = key_of(*s, cells[i].1);
                        let record = ScoreRecord {
                            sample,
                            rule: rule_id,
                            rule_hash,
                            pack: plugin.name.clone(),
                            judge_calls: evaluation.judge_calls,
                            outcome: Outcome::from_result(evaluation.result),
                        };
                        bar.inc(1);
                        out.push((i, record, warnings));
                    }
                    start = end;
                }
                out
            })
            .collect()
    })
}

/// Merges score files (shards of one job) into one canonical file: sorted, each record
/// once. Two files that disagree about the same key are an error.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<usize, ScoreError> {
    let named: Vec<(&str, &Path)> = inputs.iter().map(|p| ("input", p.as_path())).collect();
    crate::fsio::refuse_overwriting_inputs(("--out", out), &named)?;
    let mut merged: BTreeMap<(String, String, String), (ScoreRecord, usize)> = BTreeMap::new();
    for (source, path) in inputs.iter().enumerate() {
        for record in read_strict(path)? {
            let key = (record.sample.clone(), record.rule.clone(), record.rule_hash.clone());
            match merged.get(&key) {
                Some((existing, first)) if existing != &record => {
                    return Err(ScoreError::Conflict { key, first: inputs[*first].clone(), second: path.clone() });
                }
                Some(_) => {}
                None => {
                    merged.insert(key, (record, source));
                }
            }
        }
    }
    let mut text = String::new();
    for (record, _) in merged.values() {
        text.push_str(&record.to_line());
    }
    crate::fsio::write_atomic(out, text.as_bytes()).map_err(io(out))?;
    Ok(merged.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition_every_hash() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for n in 0..200 {
            let sample = Sample { prompt: vec![], response: format!("response {n}") };
            let hash = sample.hash();
            assert_eq!(shards.iter().filter(|s| s.contains(&hash)).count(), 1);
            assert!(Shard::ALL.contains(&hash));
        }
    }
}
