//! Collecting the distinct samples of a set of pairs, so each is scored once.

use std::collections::HashMap;

use super::{Pair, Sample, SampleHash};

/// The distinct samples of some pairs, and where each pair's responses are.
///
/// `samples` and `hashes` are parallel (`hashes[i]` is `samples[i].hash()`), in the
/// order the samples first occur (pair by pair, `a` before `b`).
/// `pair_samples[p]` holds the indices of pair `p`'s `a` and `b` samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleIndex {
    pub samples: Vec<Sample>,
    pub hashes: Vec<SampleHash>,
    pub pair_samples: Vec<(usize, usize)>,
}

impl SampleIndex {
    /// The number of distinct samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples (no pairs were given).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Collects the distinct (prompt, response) samples of `pairs`, identified by
/// their [`SampleHash`], in first-seen order.
pub fn unique_samples(pairs: &[Pair]) -> SampleIndex {
    let mut index = SampleIndex { pair_samples: Vec::with_capacity(pairs.len()), ..SampleIndex::default() };
    let mut position: HashMap<SampleHash, usize> = HashMap::new();
    let mut add = |pair: &Pair, response: &str| {
        let hash = SampleHash::of(&pair.prompt, response);
        *position.entry(hash).or_insert_with(|| {
            index.samples.push(Sample { prompt: pair.prompt.clone(), response: response.to_owned() });
            index.hashes.push(hash);
            index.samples.len() - 1
        })
    };
    let pair_samples: Vec<(usize, usize)> = pairs.iter().map(|pair| (add(pair, &pair.a), add(pair, &pair.b))).collect();
    index.pair_samples = pair_samples;
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Message, Pref};

    fn pair(id: &str, prompt: &str, a: &str, b: &str) -> Pair {
        Pair {
            id: id.into(),
            prompt: vec![Message::user(prompt)],
            a: a.into(),
            b: b.into(),
            gold: Some(Pref::A),
            subset: None,
        }
    }

    #[test]
    fn dedups_in_first_seen_order() {
        let pairs = [
            pair("1", "q", "x", "y"),
            pair("2", "q", "y", "z"),
            pair("3", "other", "x", "y"),
            pair("4", "q", "z", "x"),
        ];
        let index = unique_samples(&pairs);
        let seen: Vec<(&str, &str)> =
            index.samples.iter().map(|s| (s.prompt[0].content.as_str(), s.response.as_str())).collect();
        assert_eq!(seen, [("q", "x"), ("q", "y"), ("q", "z"), ("other", "x"), ("other", "y")]);
        assert_eq!(index.pair_samples, [(0, 1), (1, 2), (3, 4), (2, 0)]);
        assert_eq!(index.len(), 5);
        for (sample, hash) in index.samples.iter().zip(&index.hashes) {
            assert_eq!(sample.hash(), *hash);
        }
        for (p, &(a, b)) in pairs.iter().zip(&index.pair_samples) {
            assert_eq!(index.samples[a], p.sample(Pref::A));
            assert_eq!(index.samples[b], p.sample(Pref::B));
        }
    }

    #[test]
    fn no_pairs_no_samples() {
        let index = unique_samples(&[]);
        assert!(index.is_empty() && index.pair_samples.is_empty());
    }
}
