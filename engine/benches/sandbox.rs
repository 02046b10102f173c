//! Sandbox benchmarks (see BENCHMARKS.md for the numbers and the command):
//!
//! - `evaluate/*`: one `evaluate` call on a warm instance (fuel and epoch deadline on),
//!   for a short sample and a 4 KB response.
//! - `score_train/threads=N`: every bundled deterministic rule over the HH-RLHF train
//!   split (`../shared/data/hh-harmless-train.jsonl`), 1 and 2 worker threads.
//! - `cold_start/*`: load (verify, compile or read the cache, instantiate, read the
//!   rules) of the core pack, with and without the compiled-component cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use engine::data::{Message, ReadOptions, Sample, read_pairs, unique_samples};
use engine::plugin::{Grants, PluginSpec, Registry, Runtime, SandboxLimits};
use engine::score::{ScoreOptions, Shard, score};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn spec(file: &str) -> PluginSpec {
    PluginSpec {
        name: file.into(),
        path: root().join("plugins/dist").join(file),
        sha256: None,
        config: vec![],
        grants: Grants::default(),
    }
}

fn evaluate(c: &mut Criterion) {
    let runtime = Runtime::new(SandboxLimits::default(), None, None).unwrap();
    let example = runtime.load(&spec("example-rule.wasm")).unwrap();
    let short = Arc::new(Sample {
        prompt: vec![Message::user("How do I boil an egg?")],
        response: "Simmer it for nine minutes.".into(),
    });
    let long_text = "Here is a careful, calm answer with some detail. ".repeat(90);
    let long = Arc::new(Sample {
        prompt: vec![Message::user("Explain it at length.")],
        response: long_text[..4096].to_string(),
    });
    let mut group = c.benchmark_group("evaluate");
    group.bench_function("short", |b| b.iter(|| example.evaluate("no-shouting", &short)));
    group.bench_function("4kb", |b| b.iter(|| example.evaluate("no-shouting", &long)));
    group.finish();
}

fn score_train(c: &mut Criterion) {
    let train = root().join("../shared/data/hh-harmless-train.jsonl");
    if !train.exists() {
        eprintln!("skipping score_train: {} is not here", train.display());
        return;
    }
    let pairs = read_pairs(&train, &ReadOptions::default()).unwrap().pairs;
    let samples = unique_samples(&pairs).samples;
    let runtime = Runtime::new(SandboxLimits::default(), None, None).unwrap();
    let packs: Vec<engine::config::PackConfig> = ["core-rules.wasm", "example-rule.wasm", "c-pack.wasm"]
        .iter()
        .filter(|f| root().join("plugins/dist").join(f).exists())
        .map(|f| engine::config::PackConfig { spec: spec(f), disable: vec![] })
        .collect();
    let registry = Registry::load(&runtime, &packs, Path::new("bench")).unwrap();
    eprintln!("score_train: {} samples x {} rules", samples.len(), registry.rules.len());
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("score_train");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for threads in [1, 2] {
        group.bench_function(format!("threads={threads}"), |b| {
            b.iter(|| {
                let out = dir.path().join(format!("s{threads}.jsonl"));
                let _ = std::fs::remove_file(&out);
                let opts = ScoreOptions {
                    out,
                    shard: Shard::ALL,
                    threads: Some(threads),
                    quarantine_after: 0,
                    progress: false,
                    only: None,
                };
                score(&registry, &samples, &opts).unwrap()
            })
        });
    }
    group.finish();
}

fn cold_start(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(10);
    group.bench_function("no_cache", |b| {
        b.iter(|| Runtime::new(SandboxLimits::default(), None, None).unwrap().load(&spec("core-rules.wasm")).unwrap())
    });
    let warm = Runtime::new(SandboxLimits::default(), Some(cache.path().into()), None).unwrap();
    warm.load(&spec("core-rules.wasm")).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            let runtime = Runtime::new(SandboxLimits::default(), Some(cache.path().into()), None).unwrap();
            let plugin = runtime.load(&spec("core-rules.wasm")).unwrap();
            assert!(plugin.from_cache);
            plugin
        })
    });
    group.finish();
}

criterion_group!(benches, evaluate, score_train, cold_start);
criterion_main!(benches);
