//! Folds (in progress).
