//! The end-to-end job (`engine run`) and its report.
