//! The `engine` command line. Parsing and dispatch only; the work is in `engine::app`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use engine::app;
use engine::data::Format;
use engine::label::TiePolicy;
use engine::labeling::Calibration;
use engine::score::Shard;
use engine::select::Strategy;

/// Turns safety rules into reward-model training data.
///
/// Rules are sandboxed WebAssembly plugins listed (and pinned by sha256) in rules.toml.
/// `engine score` runs every rule on every response of a preference dataset and writes
/// scores.jsonl, resuming where an interrupted run stopped.
#[derive(Parser)]
#[command(name = "engine", version, about, long_about = None, after_help = "\
Examples:
  engine score --config rules.toml                 score the job's input with every enabled rule
  engine score --input pairs.jsonl --shard 0/4     score one quarter of the samples
  engine merge --out scores.jsonl shard-*.jsonl    merge shards into the file one run would write
  engine rules list                                the enabled rules
  engine rules verify                              check every pack's pin, ABI and imports")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole job: score → label → train → eval → report, into job.output.
    ///
    /// Scores every response under every enabled rule, labels each pair by its selected
    /// rules, trains a reward model on those labels, evaluates it on held-out pairs with
    /// gold labels (`[eval] holdout`) and on `[eval] data`, and writes report.md,
    /// report.json and plots/*.svg. Interrupted and run again, every stage picks up where
    /// it stopped (scoring resumes exactly; training resumes from its last checkpoint).
    #[command(after_help = "\
Examples:
  engine run                               the default job (rules.toml): demo data, embedded models
  engine run --config my-job.toml -j 8     another job, 8 threads
Output (job.output, e.g. runs/demo/):
  scores.jsonl labeled.jsonl heldout.jsonl rm/ eval/ report.md report.json plots/")]
    Run {
        /// The job file.
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// Worker threads for scoring and training (default: all cores).
        #[arg(long, short = 'j')]
        threads: Option<usize>,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Score every unique (prompt, response) under every enabled rule into scores.jsonl.
    ///
    /// Runs in parallel and streams results in a canonical order (sample hash, then rule
    /// id). Interrupted (even with kill -9) and run again, it resumes without redoing or
    /// duplicating work, and the finished file equals an uninterrupted run's.
    Score {
        /// The job file.
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// Pairs to score (overrides job.input). JSON Lines in any supported format.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Force an input format instead of detecting it per line:
        /// pairs | unlabeled | hh-rlhf | reward-bench | multi-response.
        #[arg(long)]
        format: Option<Format>,
        /// Skip malformed input lines (reporting how many) instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
        /// Output file (default: <job.output>/scores.jsonl).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Score only shard INDEX of COUNT (by sample hash), e.g. 0/4. Merge with `engine merge`.
        #[arg(long, value_name = "INDEX/COUNT")]
        shard: Option<Shard>,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j')]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Merge score files (shards of one job) into one canonical file.
    Merge {
        /// The merged file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// Score files to merge.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Label every pair from its rules' scores and write one audit record per pair.
    ///
    /// Per pair, the strategy keeps the rules where the two responses differ most
    /// (max-discrepancy: relevance + λ·|s_A − s_B|, top k), and the summed scores of those
    /// rules decide which response is chosen. Ties and pairs no rule can judge follow the
    /// tie policy; B never wins by default.
    Label {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Output (default: <job.output>/labeled.jsonl).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// drop | half | fallback-all (default: [selection] in rules.toml, else drop).
        #[arg(long)]
        tie_policy: Option<TiePolicy>,
    },
    /// Explain in plain words why a pair got its label.
    Explain {
        /// The pair id.
        pair: String,
        /// The labels file (default: <job.output>/labeled.jsonl of --config).
        #[arg(long)]
        labels: Option<PathBuf>,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// Agreement of rule labels with gold labels, per selection strategy.
    EvalLabels {
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// Scores covering the gold file's responses (default: <job.output>/scores.jsonl).
        #[arg(long)]
        scores: Option<PathBuf>,
        /// Pairs with gold preferences (e.g. our schema's chosen/rejected).
        #[arg(long)]
        gold: PathBuf,
        /// Strategies to compare, comma-separated (default: max-discrepancy, all,
        /// random-k, relevance-only, entropy-weighted).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<Strategy>,
        #[arg(long)]
        tie_policy: Option<TiePolicy>,
        /// Score calibrations to compare, comma-separated: none (raw scores) and/or rank
        /// (each score replaced by its rank within its rule, mapped to [-1, 1], so that
        /// rules the judge rates on different scales weigh alike).
        #[arg(long, value_delimiter = ',', default_value = "none")]
        calibrate: Vec<Calibration>,
        /// Also print each rule's own agreement with the gold labels (which response it
        /// scores higher): which rules carry signal.
        #[arg(long)]
        per_rule: bool,
        /// Also write the tables as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Pairwise rating: ask the judge to compare the two responses of each pair under the
    /// rules the strategy selects from the pointwise scores.
    ///
    /// For each selected rule the judge sees both responses, labelled 1 and 2, and answers
    /// "does response 1 follow this rule better than response 2?", once in each order so
    /// that a bias for a position cancels: the rule's preference for A is half the
    /// difference of the two P(yes) − P(no). The sign of the summed preferences labels the
    /// pair. Writes one record per pair (default <job.output>/pairwise.jsonl; a rerun
    /// resumes) and, when the pairs have gold labels, prints the agreement of pairwise and
    /// pointwise labels of the same rules with gold. Costs 2·k judge questions per pair.
    Pairwise {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Output (default: <job.output>/pairwise.jsonl).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Also write the summary as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Train a reward model on preference pairs (gold or rule labels) and export it for HF transformers.
    Train(engine::reward::cli::TrainArgs),
    /// Evaluate a reward model RewardBench-style: accuracy per subset (ties count as wrong),
    /// overall with a 95% bootstrap interval, the weighted Safety score; eval.json + eval.md.
    Eval(engine::eval::cli::EvalArgs),
    /// Serve a reward model over HTTP (POST /score, OpenRLHF's POST /get_reward, GET /health)
    /// with request batching and graceful shutdown.
    Serve(engine::serve::reward::ServeArgs),
    /// Train the Rule Adapter, which predicts from a pair's text the k rules max-discrepancy
    /// selection would keep, so that new pairs need the judge for those k rules only.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Make, sign, check and publish rule-pack bundles for a marketplace index.
    Pack {
        #[command(subcommand)]
        command: engine::market::command::PackCommand,
    },
    /// List, verify and inspect the rules of a job; search, add, update, remove and
    /// calibrate packs from an index.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Serve a judge model over an OpenAI-compatible completions API (POST /v1/completions
    /// with `logprobs`, GET /health, GET /v1/models), for `backend = "openai"` judges.
    ServeJudge {
        /// The model: a .gguf file or a safetensors checkpoint folder.
        #[arg(long)]
        model: PathBuf,
        /// Address to listen on; port 0 picks a free one (printed as `listening on http://ADDR`).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// auto (f32 for small models, int8 above) | f32 | quantized (kept quantised, f32
        /// arithmetic) | int8 (kept quantised, integer kernels with 8-bit activations).
        #[arg(long, default_value = "auto", value_parser = engine::serve::judge::parse_precision)]
        precision: engine::judge::Precision,
        /// The most tokens of one prompt.
        #[arg(long, default_value_t = 2048)]
        max_context: usize,
        /// A tokenizer.json (default: beside the model, else the GGUF metadata).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// The model's name in replies (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Sample prefixes whose KV caches are kept (0: none).
        #[arg(long, default_value_t = 8)]
        prefix_cache: usize,
        /// Forward passes run at once.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
    },
}

/// The flags `engine label` and `engine pairwise` share: which scores of which pairs, and
/// how the rules of each pair are selected from them.
#[derive(clap::Args)]
struct SelectionArgs {
    #[arg(long, short, default_value = "rules.toml")]
    config: PathBuf,
    /// Pointwise scores from `engine score` (default: <job.output>/scores.jsonl).
    #[arg(long)]
    scores: Option<PathBuf>,
    /// The pairs file that was scored (default: job.input).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Which rules to use per pair, NAME[:key=value,...]: max-discrepancy[:k=5,lambda=0.5] | all
    /// | random-k[:k=5,seed=0] | relevance-only[:k=5] | entropy-weighted[:k=5] (default:
    /// [selection] in rules.toml).
    #[arg(long)]
    strategy: Option<Strategy>,
    /// none | rank: calibrate scores before selection (default: [selection] calibrate
    /// in rules.toml, else none). See `engine eval-labels --calibrate`.
    #[arg(long)]
    calibrate: Option<Calibration>,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// The enabled rules, sorted by id.
    List {
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// Check every pack's sha256 pin, ABI version and imports, and that it loads.
    Verify {
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// Everything about one rule: metadata, pack, file, hash, ABI, imports, grants, config.
    Inspect {
        /// The rule id (see `engine rules list`).
        rule: String,
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
    },
    /// The judge's AUC on a labelled set: does P(yes) − P(no) rank responses that follow a
    /// rule above responses that violate it? Runs the `[judge]` model of the job for each
    /// prompt layout.
    JudgeProbe {
        #[arg(long, short, default_value = "rules.toml")]
        config: PathBuf,
        /// JSON Lines of {id, rule_id?, rule, prompt, response, follows}.
        #[arg(long, default_value = "data/judge-probe.jsonl")]
        data: PathBuf,
        /// sample-first | rule-first | both.
        #[arg(long, default_value = "both")]
        layout: String,
        /// Also write the reports (with every item's score) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    #[command(flatten)]
    Market(engine::market::command::MarketRulesCommand),
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Train an adapter on fully scored pairs and report recall@k, label agreement and the
    /// judge calls it saves on a held-out share.
    #[command(after_help = "\
Example:
  engine score --config rules.toml --input train.jsonl --out runs/full/scores.jsonl
  engine adapter train --scores runs/full/scores.jsonl --pairs train.jsonl --out runs/adapter
Then set `strategy = \"adapter:k=5\"` and `adapter = \"runs/adapter\"` under [selection].")]
    Train {
        /// Scores of every rule on both responses of every pair (`engine score`).
        #[arg(long)]
        scores: PathBuf,
        /// The pairs those scores are of.
        #[arg(long)]
        pairs: PathBuf,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// The sentence encoder (a BERT folder with config.json, model.safetensors,
        /// tokenizer.json). Default: --config's `[train] encoder`, else
        /// models/all-minilm-l6-v2 (relative to --config's folder, or to the working
        /// directory without --config).
        #[arg(long)]
        encoder: Option<PathBuf>,
        /// A job file (rules.toml) whose `[train] encoder` is the default --encoder,
        /// resolved relative to the job file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Rules per pair to predict (default 5).
        #[arg(long)]
        k: Option<usize>,
        /// λ of the max-discrepancy targets (default 0.5).
        #[arg(long)]
        lambda: Option<f64>,
        /// Training epochs (default 60).
        #[arg(long)]
        epochs: Option<usize>,
        /// Share of pairs held out for the report (default 0.2).
        #[arg(long)]
        holdout: Option<f64>,
        /// Seed for the initialisation, shuffling and the held-out split (default 17).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    engine::process::init();
    let cli = Cli::parse();
    // `ENGINE_PARSE_ONLY=1 engine ARGS` stops once clap has accepted ARGS, running nothing:
    // tests/examples.rs checks every example command of the help texts and READMEs this way.
    if std::env::var_os("ENGINE_PARSE_ONLY").is_some() {
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Score { config, input, format, skip_invalid, out, shard, threads, quiet } => {
            let args = app::ScoreArgs { input, format, skip_invalid, out, shard, threads, progress: !quiet };
            let report = app::score(&config, &args)?;
            let s = &report.summary;
            eprintln!(
                "scored {} samples ({} pairs{}) x {} rules in {:.1} s (+{:.1} s loading plugins): {} computed, {} resumed, {} reused",
                s.samples,
                report.pairs,
                if report.skipped > 0 { format!(", {} invalid lines skipped", report.skipped) } else { String::new() },
                s.rules,
                s.elapsed.as_secs_f64(),
                report.load_seconds,
                s.computed,
                s.resumed,
                s.reused
            );
            eprintln!("  ok: {}", s.ok);
            for (kind, count) in &s.failures {
                eprintln!("  failed ({kind}): {count}");
            }
            for (rule, reason) in &s.quarantined {
                eprintln!("  quarantined {rule}: {reason}");
            }
            if let Some((id, stats)) = &report.judge {
                eprintln!("  judge {id}: {stats}");
            }
            engine::outln!("{}", report.out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { out, inputs } => {
            let n = engine::score::merge(&inputs, &out)?;
            eprintln!("merged {} files into {} ({n} records)", inputs.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Label { selection, out, tie_policy } => {
            let SelectionArgs { config, scores, pairs, strategy, calibrate } = selection;
            let report = app::label(&config, &app::LabelArgs { scores, pairs, out, strategy, tie_policy, calibrate })?;
            let count =
                |f: &dyn Fn(&engine::label::Label) -> bool| report.records.iter().filter(|r| f(&r.label)).count();
            eprintln!(
                "labeled {} pairs: {} chosen A, {} chosen B, {} ties, {} abstained",
                report.records.len(),
                count(&|l| l.winner() == Some(engine::data::Pref::A)),
                count(&|l| l.winner() == Some(engine::data::Pref::B)),
                count(&|l| *l == engine::label::Label::Tie),
                count(&|l| matches!(l, engine::label::Label::Abstain { .. }))
            );
            if let Some(a) = &report.agreement {
                eprintln!(
                    "agreement with gold: {:.3} (95% CI {:.3}–{:.3}) on {} decided pairs; abstain rate {:.3}",
                    a.accuracy, a.ci_low, a.ci_high, a.decided, a.abstain_rate
                );
            }
            engine::outln!("{}", report.out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { pair, labels, config } => {
            let labels = match labels {
                Some(path) => path,
                None => engine::config::Job::load(&config)?.output_dir.join("labeled.jsonl"),
            };
            engine::outln!("{}", app::explain(&labels, &pair)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalLabels { config, scores, gold, strategies, tie_policy, calibrate, per_rule, json } => {
            if let Some(path) = &json {
                let mut inputs = vec![("--config", config.as_path()), ("--gold", gold.as_path())];
                inputs.extend(scores.as_deref().map(|s| ("--scores", s)));
                engine::fsio::refuse_overwriting_inputs(("--json", path), &inputs)?;
            }
            let strategies = if strategies.is_empty() {
                ["max-discrepancy", "all", "random-k", "relevance-only", "entropy-weighted"]
                    .iter()
                    .map(|s| s.parse().expect("default strategies parse"))
                    .collect()
            } else {
                strategies
            };
            let (rows, rules) =
                app::eval_labels(&config, scores.as_deref(), &gold, &strategies, &calibrate, tie_policy, per_rule)?;
            engine::out!("{}", app::agreement_table(&rows))?;
            if let Some(rules) = &rules {
                engine::out!("\nEach rule on its own (raw scores):\n\n{}", app::rule_agreement_table(rules))?;
            }
            if let Some(path) = json {
                let json = serde_json::json!({ "strategies": rows, "rules": rules });
                write_json(&path, &json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pairwise { selection, out, json, quiet } => {
            let SelectionArgs { config, scores, pairs, strategy, calibrate } = selection;
            if let Some(path) = &json {
                let mut inputs = vec![("--config", config.as_path())];
                inputs.extend(scores.as_deref().map(|s| ("--scores", s)));
                inputs.extend(pairs.as_deref().map(|p| ("--pairs", p)));
                inputs.extend(out.as_deref().map(|o| ("--out", o)));
                engine::fsio::refuse_overwriting_inputs(("--json", path), &inputs)?;
            }
            let args = app::PairwiseArgs { scores, pairs, out, strategy, calibrate, progress: !quiet };
            let (out, records) = app::pairwise(&config, &args)?;
            let summary = engine::pairwise::summarize(&records, 0);
            let labeled = records.iter().filter(|r| r.label.is_some()).count();
            let errors: usize = records.iter().map(|r| r.errors.len()).sum();
            eprintln!(
                "rated {} pairs pairwise: {labeled} labeled, {} ties; {errors} questions failed",
                records.len(),
                records.len() - labeled
            );
            if summary.decided + summary.pointwise_decided > 0 {
                engine::outln!(
                    "| rating | decided | agrees with gold | 95% CI |\n|---|---:|---:|---|\n\
                     | pairwise (both orders) | {} | {:.3} | {:.3}–{:.3} |\n| pointwise, same rules | {} | {:.3} | {:.3}–{:.3} |",
                    summary.decided,
                    summary.accuracy,
                    summary.ci_low,
                    summary.ci_high,
                    summary.pointwise_decided,
                    summary.pointwise_accuracy,
                    summary.pointwise_ci_low,
                    summary.pointwise_ci_high
                )?;
            }
            eprintln!(
                "the judge's answer flips with the order of the responses in {:.1}% of the (pair, rule) answers",
                100.0 * summary.order_flips
            );
            if let Some(path) = json {
                write_json(&path, &summary)?;
            }
            engine::outln!("{}", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Adapter {
            command: AdapterCommand::Train { scores, pairs, out, encoder, config, k, lambda, epochs, holdout, seed },
        } => {
            // An --out over an input is named before a missing model (train_files checks the
            // encoder folder too, once it is known).
            engine::fsio::refuse_output_dir_over_inputs(
                ("--out", &out),
                &[("--scores", scores.as_path()), ("--pairs", pairs.as_path())],
            )?;
            let encoder = engine::models::encoder("--encoder", encoder.as_deref(), config.as_deref())?.path;
            let files = engine::adapter::TrainFiles { scores, pairs, encoder, out: out.clone() };
            let defaults = engine::adapter::TrainOptions::default();
            let opts = engine::adapter::TrainOptions {
                k: k.unwrap_or(defaults.k),
                lambda: lambda.unwrap_or(defaults.lambda),
                epochs: epochs.unwrap_or(defaults.epochs),
                holdout: holdout.unwrap_or(defaults.holdout),
                seed: seed.unwrap_or(defaults.seed),
                ..defaults
            };
            let report = engine::adapter::train_files(&files, &opts)?;
            engine::out!("{report}")?;
            engine::outln!("wrote {} (adapter.json, adapter.safetensors, report.json)", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let outcome = engine::eval::cli::run_eval(&args)?;
            if args.json {
                engine::outln!("{}", serde_json::to_string_pretty(&outcome.report)?)?;
            } else {
                engine::out!("{}", engine::eval::summary(&outcome.report))?;
            }
            let w = &outcome.written;
            eprintln!("wrote {}, {} and {}", w.json.display(), w.markdown.display(), w.rewards.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            engine::serve::reward::run_args(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => {
            engine::outln!("{}", engine::reward::cli::run_train(&args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config, threads, quiet } => {
            let report = engine::report::run(&engine::report::RunOptions { config, threads, progress: !quiet })?;
            engine::outln!("{}", engine::report::summary(&report))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pack { command } => engine::market::command::run_pack(command),
        Command::ServeJudge { model, addr, precision, max_context, tokenizer, name, prefix_cache, parallel } => {
            let options = engine::serve::judge::ServeJudgeOptions {
                precision,
                max_context,
                tokenizer,
                name,
                prefix_cache,
                parallel,
                ..engine::serve::judge::ServeJudgeOptions::new(model, addr)
            };
            engine::serve::judge::run(options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules { command } => match command {
            RulesCommand::Market(command) => engine::market::command::run_rules(command),
            RulesCommand::List { config } => {
                engine::outln!("{}", app::rules_list(&config)?)?;
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::Verify { config } => {
                let mut failed = false;
                for v in app::rules_verify(&config)? {
                    match v.result {
                        Ok(detail) => engine::outln!("ok    {} ({}): {detail}", v.pack, v.path.display())?,
                        Err(error) => {
                            failed = true;
                            engine::outln!("FAIL  {}: {error}", v.pack)?;
                        }
                    }
                }
                Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
            }
            RulesCommand::Inspect { rule, config } => {
                engine::outln!("{}", app::rules_inspect(&config, &rule)?)?;
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::JudgeProbe { config, data, layout, json } => {
                if let Some(path) = &json {
                    let inputs = [("--config", config.as_path()), ("--data", data.as_path())];
                    engine::fsio::refuse_overwriting_inputs(("--json", path), &inputs)?;
                }
                use engine::judge::Layout;
                let layouts = match layout.as_str() {
                    "both" => vec![Layout::SampleFirst, Layout::RuleFirst],
                    one => vec![one.parse::<Layout>().map_err(anyhow::Error::msg)?],
                };
                let reports = app::judge_probe(&config, &data, &layouts)?;
                engine::outln!(
                    "| layout | items | AUC | AUC within rule | sign accuracy | mean score (follows) | mean score (violates) | P(yes)+P(no) | seconds |"
                )?;
                engine::outln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
                for (layout, r) in &reports {
                    engine::outln!(
                        "| {} | {} | {:.3} | {:.3} | {:.3} | {:+.4} | {:+.4} | {:.3} | {:.1} |",
                        layout.as_str(),
                        r.items,
                        r.auc,
                        r.auc_within_rule,
                        r.sign_accuracy,
                        r.mean_score_follows,
                        r.mean_score_violates,
                        r.mean_answer_mass,
                        r.seconds
                    )?;
                }
                if let Some(path) = json {
                    let rows: Vec<serde_json::Value> =
                        reports.iter().map(|(l, r)| serde_json::json!({ "layout": l.as_str(), "report": r })).collect();
                    write_json(&path, &rows)?;
                }
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// Writes a `--json` output atomically (see `engine::fsio::write_atomic`), naming the file
/// on failure.
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    engine::fsio::write_atomic(path, text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
