//! RewardBench-style evaluation of a trained reward model.
