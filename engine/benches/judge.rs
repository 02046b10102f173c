//! The judge benchmark, our side: times the candle judge on the prompts of
//! `scripts/bench_judge.py`, which runs transformers and llama.cpp on the same token ids and
//! prints the comparison (see BENCHMARKS.md).
//!
//! ```sh
//! cargo bench -p engine --bench judge -- --input in.json --output out.json
//! ```
//!
//! `in.json`: `{"model": PATH, "precision": "f32"|"quantized"|"int8"|"auto", "samples": [Sample...],
//! "questions": [String...], "repeats": N}`, optionally `"methods": ["prefix_batched", ...]`
//! to run only those. For each method it runs every question about
//! every sample and writes the seconds (best of `repeats`), the tokens the model ran and the
//! score P(yes) − P(no) of every (sample, question), plus the prompt's token ids (so the
//! other implementations run exactly the same tokens):
//!
//! - `full`: the paper's rating, one whole prompt per question ([`CandleJudge::ask_uncached`]);
//! - `prefix`: the sample's KV cache computed once, each question a continuation
//!   ([`Judge::ask`] one question at a time);
//! - `prefix_batched`: the same with all questions of a sample in one forward pass
//!   ([`Judge::ask_many`], what scoring uses);
//! - `batched_x2`: `prefix_batched` on two samples at a time, from two threads sharing the
//!   judge, as `engine score -j 2` runs a job on this 2-core machine.
//!
//! The prefix cache is cleared before each sample's first question in every repeat, so
//! every method computes each sample's prefix once per repeat.

use std::time::Instant;

use engine::data::Sample;
use engine::judge::{CandleJudge, CandleJudgeOptions, Judge, Precision};
use serde_json::{Value, json};

fn main() {
    // The process settings `engine` starts with (allocator, candle's element-wise pool).
    engine::process::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (Some(input), Some(output)) = (arg("--input"), arg("--output")) else {
        eprintln!("usage: cargo bench -p engine --bench judge -- --input in.json --output out.json");
        eprintln!("(run by scripts/bench_judge.py; nothing to do without --input)");
        return;
    };
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&input).expect("reading --input")).expect("--input is JSON");
    let model = spec["model"].as_str().expect("model");
    let precision: Precision = spec["precision"].as_str().unwrap_or("auto").parse().unwrap_or_else(|e| panic!("{e}"));
    let samples: Vec<Sample> = serde_json::from_value(spec["samples"].clone()).expect("samples");
    let questions: Vec<String> = serde_json::from_value(spec["questions"].clone()).expect("questions");
    let questions: Vec<&str> = questions.iter().map(String::as_str).collect();
    let repeats = spec["repeats"].as_u64().unwrap_or(1).max(1);

    let started = Instant::now();
    let judge = CandleJudge::load(model, CandleJudgeOptions { precision, ..CandleJudgeOptions::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let load_seconds = started.elapsed().as_secs_f64();
    // Warm-up: first-touch allocations and thread pools.
    judge.ask_uncached(&samples[0], questions[0]).expect("warm-up");
    judge.clear_cache();

    let mut prompts = Vec::new();
    let (mut full_tokens, mut prefix_tokens) = (0usize, 0usize);
    for sample in &samples {
        let mut per_question = Vec::new();
        for (i, q) in questions.iter().enumerate() {
            let p = judge.prompt_tokens(sample, q).expect("prompt");
            full_tokens += p.prefix.len() + p.suffix.len();
            if i == 0 {
                prefix_tokens += p.prefix.len();
            }
            prefix_tokens += p.suffix.len();
            per_question.push(json!({"prefix": p.prefix, "suffix": p.suffix}));
        }
        prompts.push(per_question);
    }

    let score = |r: Result<engine::judge::Judgement, engine::judge::JudgeError>| {
        let j = r.unwrap_or_else(|e| panic!("{e}"));
        f64::from(j.p_yes) - f64::from(j.p_no)
    };
    let mut methods = serde_json::Map::new();
    // Optional `"methods": [...]` in in.json runs only those (for profiling one of them).
    let only: Option<Vec<String>> = serde_json::from_value(spec["methods"].clone()).ok();
    for method in ["full", "prefix", "prefix_batched", "batched_x2"] {
        if only.as_ref().is_some_and(|only| !only.iter().any(|m| m == method)) {
            continue;
        }
        let mut best = f64::INFINITY;
        let mut scores = Vec::new();
        for _ in 0..repeats {
            judge.clear_cache();
            let t = Instant::now();
            let rate = |s: &Sample| -> Vec<f64> {
                match method {
                    "full" => questions.iter().map(|q| score(judge.ask_uncached(s, q))).collect(),
                    "prefix" => questions.iter().map(|q| score(judge.ask(s, q))).collect(),
                    _ => judge.ask_many(s, &questions).into_iter().map(score).collect(),
                }
            };
            scores =
                if method == "batched_x2" { two_at_a_time(&samples, rate) } else { samples.iter().map(rate).collect() };
            best = best.min(t.elapsed().as_secs_f64());
        }
        let tokens = if method == "full" { full_tokens } else { prefix_tokens };
        eprintln!("ours {method:>15}: {best:.3} s for {} evaluations", samples.len() * questions.len());
        methods.insert(method.into(), json!({"seconds": best, "tokens": tokens, "scores": scores}));
    }
    let info = judge.info();
    let out = json!({
        "model": model,
        "precision": info.precision.as_str(),
        "arithmetic": info.arithmetic,
        "params": info.params,
        "peak_rss_mib": peak_rss_mib(),
        "load_seconds": load_seconds,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "answers": {
            "yes": info.answers.yes.iter().map(|(_, id)| id).collect::<Vec<_>>(),
            "no": info.answers.no.iter().map(|(_, id)| id).collect::<Vec<_>>(),
        },
        "prompts": prompts,
        "methods": methods,
    });
    std::fs::write(&output, serde_json::to_string(&out).expect("json")).expect("writing --output");
}

/// This process's peak resident memory (`VmHWM` of /proc/self/status), in MiB; None off Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `rate` on every sample, two samples at a time (samples 0, 2, 4, ... on one thread and
/// 1, 3, 5, ... on the other); the results in sample order.
fn two_at_a_time(samples: &[Sample], rate: impl Fn(&Sample) -> Vec<f64> + Sync) -> Vec<Vec<f64>> {
    let mut rows = vec![Vec::new(); samples.len()];
    std::thread::scope(|scope| {
        let rate = &rate;
        let handles: Vec<_> = (0..2)
            .map(|w| {
                scope.spawn(move || (w..samples.len()).step_by(2).map(|i| (i, rate(&samples[i]))).collect::<Vec<_>>())
            })
            .collect();
        for handle in handles {
            for (i, row) in handle.join().expect("a benchmark thread panicked") {
                rows[i] = row;
            }
        }
    });
    rows
}
