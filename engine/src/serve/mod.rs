//! HTTP servers: the reward server (`engine serve`) and the OpenAI-compatible judge server (`engine serve-judge`).
//!
//! - [`reward`]: `POST /score`, OpenRLHF's `POST /get_reward`, `GET /health`, with request
//!   batching and graceful shutdown, over any [`crate::eval::RewardScorer`]. An axum
//!   application on a tokio runtime; the model runs on a blocking thread, so a slow
//!   forward pass never stops the server from accepting requests, answering `/health` or
//!   shutting down.

pub mod judge;
pub mod reward;
