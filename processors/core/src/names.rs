//! Display names (in progress).
