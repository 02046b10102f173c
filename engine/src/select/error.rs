use crate::data::Pref;

/// Everything that can go wrong in rule selection: a strategy that makes no sense, or
/// score rows that do not fit the rules. Each error names the strategy, pair, rule or
/// response it is about.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "strategy {strategy}: k must be at least 1 (with k = 0 no rule would be selected and no pair could be labeled)"
    )]
    ZeroK { strategy: &'static str },

    #[error("strategy max-discrepancy: lambda must be a finite number >= 0, found {lambda}")]
    InvalidLambda { lambda: f64 },

    #[error("cannot parse strategy {input:?}: {message}")]
    Parse { input: String, message: String },

    #[error("rule id {id:?} appears more than once; rule ids must be unique (they order tied rules)")]
    DuplicateRule { id: String },

    #[error("strategy entropy-weighted needs the rules' entropies (compute them with select::rule_entropies)")]
    MissingEntropies,

    #[error("{found} rule entropies given for {expected} rules")]
    EntropyCount { found: usize, expected: usize },

    #[error("rule {rule}: entropy {value} is not a finite number >= 0")]
    InvalidEntropy { rule: String, value: f64 },

    #[error("pair {pair}: response {side:?} has {found} rule scores, expected one per rule ({expected})")]
    RowLength { pair: String, side: Pref, found: usize, expected: usize },

    #[error("pair {pair}, rule {rule}, response {side:?}: {field} {value} is outside {range}")]
    OutOfRange { pair: String, rule: String, side: Pref, field: &'static str, value: f64, range: &'static str },

    #[error("pair {pair}: strategy adapter needs the adapter's predicted rules for this pair")]
    MissingPredictions { pair: String },

    #[error("pair {pair}: predicted rule index {index} is out of range (there are {rules} rules)")]
    PredictionOutOfRange { pair: String, index: usize, rules: usize },
}
