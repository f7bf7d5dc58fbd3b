//! Traffic simulator (in progress).
