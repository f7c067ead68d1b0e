//! TODO
pub mod tree_shap;
