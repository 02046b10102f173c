//! [`Strategy`]: how the rules that label a pair are chosen, with its text and serde forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SelectError;

/// The paper's k: rules kept per pair.
pub const DEFAULT_K: usize = 5;
/// The paper's λ: weight of the score discrepancy against the relevance.
pub const DEFAULT_LAMBDA: f64 = 0.5;
/// Seed of `random-k` when none is given.
pub const DEFAULT_SEED: u64 = 0;

/// How the rules that decide a pair are chosen. See the [module docs](super) for the
/// selection score of each strategy and the tie-breaking order.
///
/// Text form (CLI flags, [`FromStr`] and [`Display`](fmt::Display)): the kebab-case
/// name, optionally followed by `:` and comma-separated `key=value` parameters; missing
/// parameters take their defaults. `Display` always writes every parameter, so it
/// round-trips:
///
/// ```
/// use engine::select::Strategy;
///
/// let s: Strategy = "max-discrepancy".parse().unwrap();
/// assert_eq!(s, Strategy::default());
/// assert_eq!(s.to_string(), "max-discrepancy:k=5,lambda=0.5");
/// assert_eq!("random-k:seed=7,k=3".parse::<Strategy>().unwrap(), Strategy::RandomK { k: 3, seed: 7 });
/// assert!("relevance-only:k=0".parse::<Strategy>().unwrap_err().to_string().contains("k must be at least 1"));
/// ```
///
/// Serde form (config files, reports): internally tagged by `strategy`, with the same
/// defaults, e.g. `{"strategy": "max-discrepancy", "k": 3}` or, in TOML,
/// `strategy = "random-k"` and `seed = 7`. Deserializing validates like the
/// constructors do.
///
/// The variants' fields are public so that code can match on them; build values with
/// the constructors (or [`Strategy::validate`] them), which reject `k = 0` and a
/// negative or non-finite λ. [`Selector::new`](super::Selector::new) validates too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case", try_from = "raw::Strategy")]
pub enum Strategy {
    /// The paper's RAMO selection: the top `k` rules by `relevance + lambda · |s_A − s_B|`.
    MaxDiscrepancy { k: usize, lambda: f64 },
    /// Every rule with a verdict on both responses.
    All,
    /// `k` rules drawn uniformly at random, reproducibly from `seed` and the pair id.
    RandomK { k: usize, seed: u64 },
    /// The top `k` rules by relevance alone (max-discrepancy with λ = 0).
    RelevanceOnly { k: usize },
    /// Max-discrepancy (λ = [`DEFAULT_LAMBDA`]) scaled by a per-rule weight that falls
    /// with the entropy of the rule's scores over the dataset; the labeler sums the
    /// weighted scores. See [`rule_entropies`](super::rule_entropies).
    EntropyWeighted { k: usize },
    /// The first `k` usable rules of the list a trained rule adapter predicted for the pair.
    Adapter { k: usize },
}

impl Default for Strategy {
    /// The paper's setting: max-discrepancy with k = 5, λ = 0.5.
    fn default() -> Self {
        Strategy::MaxDiscrepancy { k: DEFAULT_K, lambda: DEFAULT_LAMBDA }
    }
}

impl Strategy {
    /// The text names of all strategies, in declaration order.
    pub const NAMES: [&'static str; 6] =
        ["max-discrepancy", "all", "random-k", "relevance-only", "entropy-weighted", "adapter"];

    /// Max-discrepancy top-`k` with discrepancy weight `lambda`.
    pub fn max_discrepancy(k: usize, lambda: f64) -> Result<Strategy, SelectError> {
        Strategy::MaxDiscrepancy { k, lambda }.validated()
    }

    /// `k` random rules per pair, seeded by `seed` and the pair id.
    pub fn random_k(k: usize, seed: u64) -> Result<Strategy, SelectError> {
        Strategy::RandomK { k, seed }.validated()
    }

    /// Top-`k` by relevance.
    pub fn relevance_only(k: usize) -> Result<Strategy, SelectError> {
        Strategy::RelevanceOnly { k }.validated()
    }

    /// Entropy-weighted max-discrepancy top-`k`.
    pub fn entropy_weighted(k: usize) -> Result<Strategy, SelectError> {
        Strategy::EntropyWeighted { k }.validated()
    }

    /// The adapter's first `k` predictions.
    pub fn adapter(k: usize) -> Result<Strategy, SelectError> {
        Strategy::Adapter { k }.validated()
    }

    /// The kebab-case name, as in [`Strategy::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::MaxDiscrepancy { .. } => "max-discrepancy",
            Strategy::All => "all",
            Strategy::RandomK { .. } => "random-k",
            Strategy::RelevanceOnly { .. } => "relevance-only",
            Strategy::EntropyWeighted { .. } => "entropy-weighted",
            Strategy::Adapter { .. } => "adapter",
        }
    }

    /// How many rules the strategy keeps per pair; `None` for [`Strategy::All`].
    pub fn k(&self) -> Option<usize> {
        match *self {
            Strategy::MaxDiscrepancy { k, .. }
            | Strategy::RandomK { k, .. }
            | Strategy::RelevanceOnly { k }
            | Strategy::EntropyWeighted { k }
            | Strategy::Adapter { k } => Some(k),
            Strategy::All => None,
        }
    }

    /// Whether [`Selector::new`](super::Selector::new) needs the rules' entropies.
    pub fn needs_entropies(&self) -> bool {
        matches!(self, Strategy::EntropyWeighted { .. })
    }

    /// Whether [`Selector::select`](super::Selector::select) needs the adapter's
    /// predicted rules for each pair.
    pub fn needs_predictions(&self) -> bool {
        matches!(self, Strategy::Adapter { .. })
    }

    /// Checks the parameters: `k ≥ 1`, and λ finite and `≥ 0`.
    pub fn validate(&self) -> Result<(), SelectError> {
        if self.k() == Some(0) {
            return Err(SelectError::ZeroK { strategy: self.name() });
        }
        if let Strategy::MaxDiscrepancy { lambda, .. } = *self
            && !(lambda.is_finite() && lambda >= 0.0)
        {
            return Err(SelectError::InvalidLambda { lambda });
        }
        Ok(())
    }

    fn validated(self) -> Result<Strategy, SelectError> {
        self.validate().map(|()| self)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::MaxDiscrepancy { k, lambda } => write!(f, "max-discrepancy:k={k},lambda={lambda}"),
            Strategy::All => f.write_str("all"),
            Strategy::RandomK { k, seed } => write!(f, "random-k:k={k},seed={seed}"),
            Strategy::RelevanceOnly { k } => write!(f, "relevance-only:k={k}"),
            Strategy::EntropyWeighted { k } => write!(f, "entropy-weighted:k={k}"),
            Strategy::Adapter { k } => write!(f, "adapter:k={k}"),
        }
    }
}

impl FromStr for Strategy {
    type Err = SelectError;

    fn from_str(input: &str) -> Result<Strategy, SelectError> {
        let fail = |message: String| SelectError::Parse { input: input.to_owned(), message };
        let (name, params) = match input.split_once(':') {
            Some((name, params)) => (name.trim(), Some(params)),
            None => (input.trim(), None),
        };
        let allowed: &[&str] = match name {
            "max-discrepancy" => &["k", "lambda"],
            "all" => &[],
            "random-k" => &["k", "seed"],
            "relevance-only" | "entropy-weighted" | "adapter" => &["k"],
            _ => {
                return Err(fail(format!("unknown strategy {name:?}; expected one of {}", Strategy::NAMES.join(", "))));
            }
        };

        let (mut k, mut lambda, mut seed) = (None, None, None);
        for item in params.into_iter().flat_map(|p| p.split(',')) {
            let (key, value) =
                item.split_once('=').ok_or_else(|| fail(format!("expected key=value, found {:?}", item.trim())))?;
            let (key, value) = (key.trim(), value.trim());
            if !allowed.contains(&key) {
                let expected = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
                return Err(fail(format!("{name} has no parameter {key:?} (parameters: {expected})")));
            }
            let duplicate = || fail(format!("parameter {key} is given twice"));
            let bad = |what: &str| fail(format!("{key} = {value:?} is not {what}"));
            match key {
                "k" if k.is_some() => return Err(duplicate()),
                "k" => k = Some(value.parse::<usize>().map_err(|_| bad("a whole number"))?),
                "lambda" if lambda.is_some() => return Err(duplicate()),
                "lambda" => lambda = Some(value.parse::<f64>().map_err(|_| bad("a number"))?),
                "seed" if seed.is_some() => return Err(duplicate()),
                _ => seed = Some(value.parse::<u64>().map_err(|_| bad("a whole number >= 0"))?),
            }
        }

        let k = k.unwrap_or(DEFAULT_K);
        match name {
            "max-discrepancy" => Strategy::max_discrepancy(k, lambda.unwrap_or(DEFAULT_LAMBDA)),
            "all" => Ok(Strategy::All),
            "random-k" => Strategy::random_k(k, seed.unwrap_or(DEFAULT_SEED)),
            "relevance-only" => Strategy::relevance_only(k),
            "entropy-weighted" => Strategy::entropy_weighted(k),
            _ => Strategy::adapter(k),
        }
    }
}

/// The unvalidated serde form; `Strategy` deserializes through it so that a config file
/// cannot smuggle in `k = 0`.
mod raw {
    use serde::Deserialize;

    use super::{DEFAULT_K, DEFAULT_LAMBDA, DEFAULT_SEED};

    fn k() -> usize {
        DEFAULT_K
    }
    fn lambda() -> f64 {
        DEFAULT_LAMBDA
    }
    fn seed() -> u64 {
        DEFAULT_SEED
    }

    #[derive(Deserialize)]
    #[serde(tag = "strategy", rename_all = "kebab-case", deny_unknown_fields)]
    pub(super) enum Strategy {
        MaxDiscrepancy {
            #[serde(default = "k")]
            k: usize,
            #[serde(default = "lambda")]
            lambda: f64,
        },
        All,
        RandomK {
            #[serde(default = "k")]
            k: usize,
            #[serde(default = "seed")]
            seed: u64,
        },
        RelevanceOnly {
            #[serde(default = "k")]
            k: usize,
        },
        EntropyWeighted {
            #[serde(default = "k")]
            k: usize,
        },
        Adapter {
            #[serde(default = "k")]
            k: usize,
        },
    }

    impl TryFrom<Strategy> for super::Strategy {
        type Error = super::SelectError;

        fn try_from(raw: Strategy) -> Result<Self, Self::Error> {
            let strategy = match raw {
                Strategy::MaxDiscrepancy { k, lambda } => super::Strategy::MaxDiscrepancy { k, lambda },
                Strategy::All => super::Strategy::All,
                Strategy::RandomK { k, seed } => super::Strategy::RandomK { k, seed },
                Strategy::RelevanceOnly { k } => super::Strategy::RelevanceOnly { k },
                Strategy::EntropyWeighted { k } => super::Strategy::EntropyWeighted { k },
                Strategy::Adapter { k } => super::Strategy::Adapter { k },
            };
            strategy.validated()
        }
    }
}
