//! TODO
pub mod tree;
