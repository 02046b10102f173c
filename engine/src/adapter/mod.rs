//! The Rule Adapter: predicts the max-discrepancy top-k rules of a pair from its text alone.
