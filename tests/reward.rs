//! The reward model: our BERT against sentence-transformers / HF transformers, the export's
//! compatibility with `AutoModelForSequenceClassification`, exact resume, and `engine train`.
//!
//! Golden values come from the reference venv (`.venv-ref`, see scripts/rm_reference.py);
//! when the venv exists the live tests also run it and compare directly.

use std::path::{Path, PathBuf};

use candle_core::Device;
use engine::data::Message;
use engine::reward::bert::BertConfig;
use engine::reward::decoder::DecoderConfig;
use engine::reward::{Encoder, RewardModel, TrainOptions, TrainPair};

use crate::util::{self, root};

fn minilm() -> PathBuf {
    root().join("models/all-minilm-l6-v2")
}

fn venv_python() -> Option<PathBuf> {
    let python = root().join(".venv-ref/bin/python");
    if python.exists() {
        Some(python)
    } else {
        eprintln!("skipping the live comparison: {} is not here (see scripts/rm_reference.py)", python.display());
        None
    }
}

const SENTENCES: [&str; 3] = [
    "A man is eating food.",
    "How do I pick a lock without the key?",
    "The weather today is sunny and warm, with a light breeze from the west.",
];

/// The first 8 components and the sum of all 384 of each sentence's embedding, printed by
/// `.venv-ref/bin/python scripts/rm_reference.py embed --model models/all-minilm-l6-v2 SENTENCE...`
/// (transformers' BertModel, mean pooling, L2 normalisation = sentence-transformers).
const GOLDEN_EMBEDDINGS: [[f32; 8]; 3] = [
    [0.0332416, 0.0044061, -0.0062770, 0.0483787, -0.1387022, -0.0336174, 0.1011283, -0.0543850],
    [-0.0451397, 0.0026764, -0.0522207, 0.0132517, -0.0296968, 0.1056088, 0.0395288, -0.0372855],
    [0.0410467, 0.0868705, 0.0984022, 0.0395349, 0.0523567, -0.0504384, 0.0719008, -0.0991020],
];
const GOLDEN_SUMS: [f32; 3] = [0.226_490_57, 0.352_616_36, -0.460_446_63];

#[test]
fn sentence_embeddings_match_sentence_transformers() {
    let encoder = Encoder::load(&minilm(), &Device::Cpu).unwrap();
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let e = encoder.sentence_embeddings(&texts, 256).unwrap();
    for (i, v) in e.iter().enumerate() {
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sentence {i}: norm {norm}");
        for (j, (a, b)) in v.iter().zip(GOLDEN_EMBEDDINGS[i]).enumerate() {
            assert!((a - b).abs() < 1e-4, "sentence {i} component {j}: {a} vs {b}");
        }
        let sum: f32 = v.iter().sum();
        assert!((sum - GOLDEN_SUMS[i]).abs() < 1e-4, "sentence {i}: sum {sum} vs {}", GOLDEN_SUMS[i]);
    }
}

fn items() -> Vec<(Vec<Message>, String)> {
    vec![
        (vec![Message::user("How do I pick a lock?")], "I can't help with breaking into places.".to_string()),
        (
            vec![Message::user("Hi"), Message::assistant("Hello! How can I help?"), Message::user("Tell me a joke.")],
            "Why did the chicken cross the road? To get to the other side.".to_string(),
        ),
        (vec![Message::new(engine::data::Role::System, "Be brief."), Message::user("What is 2+2?")], "4.".to_string()),
    ]
}

/// Rewards of the three items above from the export of `RewardModel::from_backbone(MiniLM,
/// seed 7, max_len 128)` with its classifier weights multiplied by 50 (HF's initial N(0, 0.02²)
/// head gives rewards of about ±0.01, too small for a 1e-4 check to mean much), printed by
/// `.venv-ref/bin/python scripts/rm_reference.py score --model EXPORT --items items.json`
/// (AutoModelForSequenceClassification; `live_comparison_with_transformers` writes EXPORT and
/// items.json to a temporary folder and runs exactly this).
const GOLDEN_REWARDS: [f32; 3] = [-0.698_672_6, -0.787_088_7, 0.147_399_77];

fn seeded_export(dir: &Path) -> RewardModel {
    let rm = RewardModel::from_backbone(&minilm(), &Device::Cpu, 7, 128).unwrap();
    let head = rm.params().get("classifier.weight").unwrap();
    head.set(&(head.as_tensor() * 50.0).unwrap()).unwrap();
    rm.save(dir).unwrap();
    rm
}

#[test]
fn exported_reward_model_scores_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = seeded_export(dir.path());
    let loaded = RewardModel::load(dir.path()).unwrap();
    let a = fresh.score(&items()).unwrap();
    let b = loaded.score(&items()).unwrap();
    assert_eq!(a, b, "the export reloads to the same model");
    for (i, (got, want)) in b.iter().zip(GOLDEN_REWARDS).enumerate() {
        assert!((got - want).abs() < 1e-4, "item {i}: {got} vs transformers' {want}");
    }
    // The HF-facing files.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap()).unwrap();
    assert!(tok["truncation"].is_null() && tok["padding"].is_null());
}

fn items_json(items: &[(Vec<Message>, String)]) -> String {
    let rows: Vec<serde_json::Value> =
        items.iter().map(|(p, r)| serde_json::json!({"prompt": p, "response": r})).collect();
    serde_json::to_string(&rows).unwrap()
}

fn run_reference(python: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .arg(root().join("scripts/rm_reference.py"))
        .args(args)
        .output()
        .expect("running scripts/rm_reference.py");
    assert!(out.status.success(), "rm_reference.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn live_comparison_with_transformers() {
    let Some(python) = venv_python() else { return };
    // Reward model export, scored by AutoModelForSequenceClassification.
    let dir = tempfile::tempdir().unwrap();
    let rm = seeded_export(dir.path());
    let items = items();
    let items_path = dir.path().join("items.json");
    std::fs::write(&items_path, items_json(&items)).unwrap();
    let reference = run_reference(
        &python,
        &["score", "--model", dir.path().to_str().unwrap(), "--items", items_path.to_str().unwrap()],
    );
    let theirs: Vec<f32> = serde_json::from_value(reference["rewards"].clone()).unwrap();
    let ours = rm.score(&items).unwrap();
    eprintln!("rewards: ours {ours:?}, transformers {theirs:?}");
    assert_eq!(reference["num_labels"], 1);
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-4, "ours {ours:?} vs transformers {theirs:?}");
    }
    // Sentence embeddings, every component.
    let mut args =
        vec!["embed", "--model", minilm().to_str().unwrap()].into_iter().map(String::from).collect::<Vec<_>>();
    args.extend(SENTENCES.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = run_reference(&python, &args);
    let theirs: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).unwrap();
    let encoder = Encoder::load(&minilm(), &Device::Cpu).unwrap();
    let ours = encoder.sentence_embeddings(&SENTENCES.map(String::from), 256).unwrap();
    let worst = ours.iter().flatten().zip(theirs.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("sentence embeddings: largest difference {worst:e}");
    assert!(worst < 1e-4);
}

/// A BERT of width 16 over the real vocabulary, random weights: trains in seconds.
fn tiny_backbone(dir: &Path) {
    let config = BertConfig {
        vocab_size: 30522,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: "gelu".into(),
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        initializer_range: 0.02,
    };
    engine::reward::create_random_backbone(dir, &config, &minilm().join("tokenizer.json"), 3).unwrap();
}

fn demo_pairs() -> (Vec<TrainPair>, Vec<TrainPair>) {
    let pairs = engine::reward::data::read_pairs(&root().join("data/demo.jsonl")).unwrap();
    let (all, _) = TrainPair::from_gold(&pairs);
    let (train, dev) = all.split_at(24);
    (train.to_vec(), dev.to_vec())
}

#[test]
fn resumed_training_ends_where_an_uninterrupted_run_ends() {
    let work = tempfile::tempdir().unwrap();
    let backbone = work.path().join("tiny");
    tiny_backbone(&backbone);
    let (train, dev) = demo_pairs();
    let options = |out: &str| TrainOptions {
        epochs: 2,
        batch_size: 4,
        max_len: 64,
        checkpoint_every: 2,
        bucket: 2,
        lr: 1e-3,
        progress: false,
        threads: Some(2),
        ..TrainOptions::new(&backbone, work.path().join(out))
    };
    let straight = engine::reward::train(&options("straight"), &train, &dev).unwrap();
    assert_eq!(straight.steps, 12);

    // Interrupted after 4 steps (a checkpoint), then resumed with the same options.
    let first =
        engine::reward::train(&TrainOptions { stop_after: Some(4), ..options("resumed") }, &train, &dev).unwrap();
    assert_eq!(first.steps, 4);
    assert!(!work.path().join("resumed/model.safetensors").exists(), "an interrupted run exports nothing");
    let second = engine::reward::train(&TrainOptions { resume: true, ..options("resumed") }, &train, &dev).unwrap();
    assert_eq!((second.resumed_from, second.steps), (4, 12));

    let a = RewardModel::load(&work.path().join("straight")).unwrap();
    let b = RewardModel::load(&work.path().join("resumed")).unwrap();
    let dev_items: Vec<(Vec<Message>, String)> = dev
        .iter()
        .flat_map(|p| [(p.prompt.clone(), p.chosen.clone()), (p.prompt.clone(), p.rejected.clone())])
        .collect();
    let (ra, rb) = (a.score(&dev_items).unwrap(), b.score(&dev_items).unwrap());
    let worst = ra.iter().zip(&rb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5, "resumed rewards differ from the uninterrupted run's by {worst}");
    assert_eq!(straight.epochs.len(), 2);
    for (x, y) in straight.epochs.iter().zip(&second.epochs) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-5 && x.dev_accuracy == y.dev_accuracy, "{x:?} vs {y:?}");
    }
    // Training moved the model: the loss went down from ln 2.
    assert!(straight.epochs[1].train_loss < std::f64::consts::LN_2, "{:?}", straight.epochs);
}

/// Issue 21: a checkpoint made on other pairs (same count, one response edited) is not
/// resumed; the error says why and what to do.
#[test]
fn a_checkpoint_made_on_other_data_is_not_resumed() {
    let work = tempfile::tempdir().unwrap();
    let backbone = work.path().join("tiny");
    tiny_backbone(&backbone);
    let (train, dev) = demo_pairs();
    let options = TrainOptions {
        epochs: 1,
        batch_size: 4,
        max_len: 64,
        checkpoint_every: 2,
        progress: false,
        threads: Some(2),
        ..TrainOptions::new(&backbone, work.path().join("rm"))
    };
    let first = engine::reward::train(&TrainOptions { stop_after: Some(2), ..options.clone() }, &train, &dev).unwrap();
    assert_eq!(first.steps, 2);
    let mut edited = train.clone();
    edited[0].chosen.push_str(" (edited)");
    let err = engine::reward::train(&TrainOptions { resume: true, ..options.clone() }, &edited, &dev).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("state.json") && message.contains("other data") && message.contains("--resume"),
        "{message}"
    );
    // The same data still resumes.
    let resumed = engine::reward::train(&TrainOptions { resume: true, ..options }, &train, &dev).unwrap();
    assert_eq!(resumed.resumed_from, 2);
}

#[test]
fn train_command_writes_an_export_and_reports_dev_accuracy() {
    let work = tempfile::tempdir().unwrap();
    tiny_backbone(&work.path().join("tiny"));
    let demo = root().join("data/demo.jsonl");
    let out = util::engine(
        work.path(),
        &[
            "train",
            "--data",
            demo.to_str().unwrap(),
            "--dev",
            demo.to_str().unwrap(),
            "--backbone",
            "tiny",
            "--out",
            "rm",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--max-len",
            "64",
            "--checkpoint-every",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", util::stderr(&out));
    // stderr is a pipe here, as in a log file: progress comes as lines, not a bar.
    let log = util::stderr(&out);
    assert!(log.contains("train step 2/6 (") && log.contains("train step 4/6 ("), "{log}");
    assert!(log.contains("epoch 1: train loss") && log.contains("dev accuracy"), "{log}");
    let text = util::stdout(&out);
    assert!(text.contains("trained on 48 of 48 pairs"), "{text}");
    assert!(text.contains("dev accuracy"), "{text}");
    for file in ["config.json", "model.safetensors", "tokenizer.json", "reward_model.json"] {
        assert!(work.path().join("rm").join(file).exists(), "{file} missing");
    }
    let rm = RewardModel::load(&work.path().join("rm")).unwrap();
    assert_eq!(rm.max_len(), 64);

    let help = util::stdout(&util::engine(work.path(), &["train", "--help"]));
    assert!(help.contains("Examples:") && help.contains("--resume"), "{help}");
}

/// A tiny Llama (grouped k/v heads, `llama3` RoPE scaling with a short original context so
/// that all three of its frequency bands occur) or Qwen2 (q/k/v biases) over MiniLM's
/// tokenizer, random weights from a fixed seed.
fn tiny_decoder(dir: &Path, model_type: &str) {
    let rope_scaling = (model_type == "llama").then(|| {
        serde_json::json!({"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    });
    let config = DecoderConfig {
        model_type: model_type.into(),
        vocab_size: 30522,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: None,
        max_position_embeddings: 128,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        rope_scaling,
        hidden_act: "silu".into(),
        attention_bias: false,
        mlp_bias: false,
        use_sliding_window: false,
        initializer_range: 0.1,
    };
    engine::reward::create_random_decoder(dir, &config, &minilm().join("tokenizer.json"), 11).unwrap();
}

/// `RewardModel::from_backbone(tiny_decoder, seed 7, max_len 128)` with its score head
/// multiplied by 5 and every bias set to a fixed non-zero pattern (they start at zero),
/// saved to `dir`.
fn seeded_decoder_export(work: &Path, model_type: &str, dir: &Path) -> RewardModel {
    let backbone = work.join(format!("tiny-{model_type}"));
    tiny_decoder(&backbone, model_type);
    let rm = RewardModel::from_backbone(&backbone, &Device::Cpu, 7, 128).unwrap();
    let head = rm.params().get("score.weight").unwrap();
    head.set(&(head.as_tensor() * 5.0).unwrap()).unwrap();
    for (name, var) in rm.params().iter() {
        if name.ends_with(".bias") {
            let n = var.elem_count();
            let pattern: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.02).collect();
            var.set(&candle_core::Tensor::from_vec(pattern, n, &Device::Cpu).unwrap()).unwrap();
        }
    }
    rm.save(dir).unwrap();
    rm
}

/// Rewards of `items()` from `seeded_decoder_export` for llama and qwen2, printed by
/// `.venv-ref/bin/python scripts/rm_reference.py score --model EXPORT --items items.json`
/// (AutoModelForSequenceClassification, transformers 4.57); `live_decoder_comparison_with_transformers`
/// writes EXPORT and items.json to a temporary folder and runs exactly this.
const GOLDEN_DECODER_REWARDS: [(&str, [f32; 3]); 2] =
    [("llama", [3.124_071_1, -2.767_96, 0.265_815_73]), ("qwen2", [-1.051_158, -4.629_384, -0.169_342_13])];

#[test]
fn decoder_exports_score_like_transformers() {
    let work = tempfile::tempdir().unwrap();
    for (model_type, golden) in GOLDEN_DECODER_REWARDS {
        let dir = work.path().join(format!("rm-{model_type}"));
        let fresh = seeded_decoder_export(work.path(), model_type, &dir);
        let loaded = RewardModel::load(&dir).unwrap();
        assert_eq!(loaded.backbone_type(), model_type);
        let a = fresh.score(&items()).unwrap();
        let b = loaded.score(&items()).unwrap();
        assert_eq!(a, b, "{model_type}: the export reloads to the same model");
        for (i, (got, want)) in b.iter().zip(golden).enumerate() {
            assert!((got - want).abs() < 1e-4, "{model_type} item {i}: {got} vs transformers' {want}");
        }
        // Scored one at a time or padded in a batch: the same rewards (pooling skips padding).
        for (i, item) in items().iter().enumerate() {
            let alone = loaded.score(std::slice::from_ref(item)).unwrap()[0];
            assert!((alone - b[i]).abs() < 1e-5, "{model_type} item {i}: alone {alone} vs batched {}", b[i]);
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let architecture =
            if model_type == "llama" { "LlamaForSequenceClassification" } else { "Qwen2ForSequenceClassification" };
        assert_eq!(config["architectures"][0], architecture);
        assert_eq!(config["pad_token_id"], 0, "MiniLM's tokenizer pads with [PAD] = 0");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reward_model.json")).unwrap()).unwrap();
        assert_eq!(meta["layout"], "decoder-text-v1");
    }
}

#[test]
fn live_decoder_comparison_with_transformers() {
    let Some(python) = venv_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let items = items();
    let items_path = work.path().join("items.json");
    std::fs::write(&items_path, items_json(&items)).unwrap();
    for model_type in ["llama", "qwen2"] {
        let dir = work.path().join(format!("rm-{model_type}"));
        let rm = seeded_decoder_export(work.path(), model_type, &dir);
        let reference = run_reference(
            &python,
            &["score", "--model", dir.to_str().unwrap(), "--items", items_path.to_str().unwrap()],
        );
        let theirs: Vec<f32> = serde_json::from_value(reference["rewards"].clone()).unwrap();
        let ours = rm.score(&items).unwrap();
        eprintln!("{model_type} rewards: ours {ours:?}, transformers {theirs:?}");
        assert_eq!(reference["num_labels"], 1);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-4, "{model_type}: ours {ours:?} vs transformers {theirs:?}");
        }
    }
}

#[test]
fn a_decoder_backbone_trains_and_its_export_reloads() {
    let work = tempfile::tempdir().unwrap();
    let backbone = work.path().join("tiny-qwen2");
    tiny_decoder(&backbone, "qwen2");
    let (train_pairs, dev) = demo_pairs();
    let options = TrainOptions {
        epochs: 2,
        batch_size: 4,
        max_len: 64,
        checkpoint_every: 3,
        bucket: 2,
        lr: 1e-3,
        progress: false,
        threads: Some(2),
        ..TrainOptions::new(&backbone, work.path().join("rm"))
    };
    let report = engine::reward::train(&options, &train_pairs, &dev).unwrap();
    assert!(report.epochs[1].train_loss < std::f64::consts::LN_2, "{:?}", report.epochs);
    assert!(report.epochs.iter().all(|e| e.dev_accuracy.is_some()), "{:?}", report.epochs);
    let rm = RewardModel::load(&work.path().join("rm")).unwrap();
    assert_eq!(rm.backbone_type(), "qwen2");
    assert_eq!(rm.max_len(), 64);
    // The long demo items were cut to 64 tokens, and score the same alone as in a batch.
    let items: Vec<(Vec<Message>, String)> = dev.iter().take(4).map(|p| (p.prompt.clone(), p.chosen.clone())).collect();
    let batched = rm.score(&items).unwrap();
    for (i, item) in items.iter().enumerate() {
        let alone = rm.score(std::slice::from_ref(item)).unwrap()[0];
        assert!((alone - batched[i]).abs() < 1e-5, "item {i}: {alone} vs {}", batched[i]);
    }
}

/// The Rule Adapter embeds with BERT; pointing it at a decoder is an error naming the file
/// and the model type, not a missing-field message from deep in the config parser.
#[test]
fn a_decoder_is_refused_as_the_sentence_encoder() {
    let work = tempfile::tempdir().unwrap();
    let backbone = work.path().join("tiny-llama");
    tiny_decoder(&backbone, "llama");
    let error = Encoder::load(&backbone, &Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("tiny-llama/config.json"), "{error}");
    assert!(error.contains("model_type \"llama\" is a decoder") && error.contains("BERT encoder"), "{error}");
}

fn smollm2_gguf() -> PathBuf {
    root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Rewards of `items()` from `RewardModel::from_backbone(SmolLM2-135M-Instruct Q4_1 GGUF,
/// seed 7, max_len 128)`'s export (weights dequantised to f32, llama.cpp's q/k permutation
/// undone), printed by `.venv-ref/bin/python scripts/rm_reference.py score --model EXPORT
/// --items items.json`; `live_gguf_backbone_comparison_with_transformers` runs exactly this.
const GOLDEN_GGUF_REWARDS: [f32; 3] = [-0.466_140_15, -0.081_606_28, -0.473_827_93];

#[test]
fn a_gguf_backbone_is_dequantised_into_an_export_transformers_reads() {
    let work = tempfile::tempdir().unwrap();
    let rm = RewardModel::from_backbone(&smollm2_gguf(), &Device::Cpu, 7, 128).unwrap();
    assert_eq!(rm.backbone_type(), "llama");
    rm.save(work.path()).unwrap();
    let loaded = RewardModel::load(work.path()).unwrap();
    let ours = loaded.score(&items()).unwrap();
    assert_eq!(ours, rm.score(&items()).unwrap(), "the export reloads to the same model");
    for (i, (got, want)) in ours.iter().zip(GOLDEN_GGUF_REWARDS).enumerate() {
        assert!((got - want).abs() < 1e-4, "item {i}: {got} vs transformers' {want}");
    }
}

#[test]
fn live_gguf_backbone_comparison_with_transformers() {
    let Some(python) = venv_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let rm = RewardModel::from_backbone(&smollm2_gguf(), &Device::Cpu, 7, 128).unwrap();
    let export = work.path().join("rm");
    rm.save(&export).unwrap();
    let items = items();
    let items_path = work.path().join("items.json");
    std::fs::write(&items_path, items_json(&items)).unwrap();
    let reference = run_reference(
        &python,
        &["score", "--model", export.to_str().unwrap(), "--items", items_path.to_str().unwrap()],
    );
    let theirs: Vec<f32> = serde_json::from_value(reference["rewards"].clone()).unwrap();
    let ours = rm.score(&items).unwrap();
    eprintln!("SmolLM2 GGUF backbone rewards: ours {ours:?}, transformers {theirs:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-4, "ours {ours:?} vs transformers {theirs:?}");
    }
}
