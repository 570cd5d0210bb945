//! Variable scoping (filled in below).
