//! The reward model: an encoder backbone with a scalar head, trained with the Bradley-Terry loss.
