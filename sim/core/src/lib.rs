//! Simulated GPU state.
