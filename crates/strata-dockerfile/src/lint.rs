//! Lint (filled in below).
