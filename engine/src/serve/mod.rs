//! HTTP servers: the reward server (`engine serve`) and the OpenAI-compatible judge server (`engine serve-judge`).
