//! Data readers (being written).
