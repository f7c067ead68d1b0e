//! Exact path-dependent TreeSHAP (Lundberg et al. 2020) in margin space, computed per leaf with
//! precomputed subset tables (the idea of Fast TreeSHAP v2, Yang 2021).
//!
//! For a leaf with value v whose path splits on the unique features U (k = |U|), let z_j be the
//! product of the cover fractions of the path nodes on feature j, and T the features on which
//! the row follows every path node. The leaf's Shapley contribution is
//!   i in T:      v (1 - z_i) Z(U\T) G(T\{i})
//!   i in U\T:   -v Z(U\T) G(T)
//! with Z(A) = prod of z over A and G(A) = sum_{S in A} w(|S|, k) prod_{A\S} z, w(s,k) = s!(k-s-1)!/k!.
//! This is what XGBoost's and LightGBM's recursive algorithm computes (a feature repeated on a
//! path is merged into one unique feature there too), but it does not depend on the row except
//! through T. So per leaf we tabulate H(T) = Z(U\T) G(T) for all 2^k subsets once and, for the
//! common leaf (one output, k <= `MAX_FAST_K`), expand it into every slot's contribution for
//! every T, times the leaf value (k 2^k values). A row then costs one pass over the nodes (to find
//! T for every leaf) and k additions per leaf, instead of O(k^2) per leaf. Batches run tree by
//! tree and leaf by leaf with the rows innermost, so a tree's tables are read once per block.
//! Leaves with several outputs use the H table (O(k) lookups); leaves with a long path
//! (k > `MAX_TABLE_K`), a zero cover fraction, or past the table memory budgets are computed
//! directly from the formula (O(k^3), no table).
//!
//! Most trees go further (`grouped`): the leaves of a whole subtree share one table indexed by
//! the row's outcomes at the subtree's branches and those above it, so a row costs one lookup
//! per subtree instead of one per leaf. The per-leaf tables serve the trees that do not fit.

mod grouped;

use crate::score::tree::{MarginColumn, NodeKind, TreeEnsemble, TreeError};
use grouped::{GroupedTree, Groups};

/// Largest unique-feature count per leaf that gets a table (2^k f64 each).
const MAX_TABLE_K: usize = 12;
/// Total table entries across the ensemble (f64): 8 M = 64 MiB.
const TABLE_BUDGET: usize = 8 << 20;
/// Largest path for a [`FastLeaf`] (k 2^k f64 of contributions each).
const MAX_FAST_K: usize = 8;
/// Total contribution entries of fast leaves (f64): 8 M = 64 MiB; later leaves use H tables.
const FAST_BUDGET: usize = 8 << 20;
/// Rows explained together by [`TreeShap::shap_batch`].
const BLOCK: usize = 128;
/// u64 masks hold the features of a path.
const MAX_PATH_FEATURES: usize = 64;

#[derive(Clone, Debug)]
struct SNode {
    /// Internal nodes: feature, threshold, mode; leaves: `is_leaf`.
    feature: u32,
    threshold: f64,
    mode: crate::score::tree::NodeMode,
    missing_true: bool,
    true_child: u32,
    false_child: u32,
    /// Position of this node's feature among the unique features of its path.
    slot: u8,
    is_leaf: bool,
}

#[derive(Clone, Debug)]
struct SLeaf {
    node: u32,
    k: u8,
    /// `feats[f0..f0 + k]`, `zs[..]`, `cs[..]` in slot order.
    f0: u32,
    /// Offset of the 2^k table, or `None` for the direct formula.
    table: Option<usize>,
    /// `weights[w0..w0 + wn]`: (accumulation column, value).
    w0: u32,
    wn: u32,
}

/// An internal node in the per-row mask pass: children index the mask array.
#[derive(Clone, Debug)]
struct SInner {
    at: u32,
    feature: u32,
    threshold: f64,
    mode: crate::score::tree::NodeMode,
    missing_true: bool,
    true_child: u32,
    false_child: u32,
    bit: u64,
}

/// The common leaf (one weight read by one margin column, a short path): its contributions for
/// every pattern are tabulated with the leaf's scaled value, so a row costs k additions.
#[derive(Clone, Debug)]
struct FastLeaf {
    node: u32,
    k: u32,
    f0: u32,
    table: u32,
    margin: u32,
}

#[derive(Clone, Debug)]
struct STree {
    /// Internal nodes, parents first.
    inner: Vec<SInner>,
    /// Number of nodes (the mask array's length for this tree).
    n_nodes: usize,
    fast: Vec<FastLeaf>,
    /// Every other leaf, through the general path.
    leaves: Vec<SLeaf>,
    /// The tree as subtree tables (then `inner`, `fast` and `leaves` are empty).
    grouped: Option<GroupedTree>,
}

/// Exact TreeSHAP for one ensemble, shareable across threads.
#[derive(Debug)]
pub struct TreeShap {
    n_features: usize,
    margins: Vec<MarginColumn>,
    scale: f64,
    /// Accumulation column -> margin columns reading it.
    margin_of_column: Vec<Vec<usize>>,
    expected: Vec<f64>,
    trees: Vec<STree>,
    feats: Vec<u32>,
    zs: Vec<f64>,
    /// (1 - z) / z, for table lookups.
    cs: Vec<f64>,
    weights: Vec<(u32, f64)>,
    tables: Vec<f64>,
    /// Fast leaves: `contributions[table + t * k + b]` is slot b's contribution (leaf value
    /// included) for a row whose followed slots are t.
    contributions: Vec<f64>,
    /// w(s, k) = s!(k-s-1)!/k!, indexed [k][s].
    shapley_w: Vec<Vec<f64>>,
    max_nodes: usize,
    groups: Groups,
    /// Most outcome words per row of a grouped tree.
    max_words: usize,
}

fn shapley_weights() -> Vec<Vec<f64>> {
    let mut fact = vec![1.0f64; MAX_PATH_FEATURES + 2];
    for i in 1..fact.len() {
        fact[i] = fact[i - 1] * i as f64;
    }
    (0..=MAX_PATH_FEATURES)
        .map(|k| {
            (0..k)
                .map(|s| fact[s] * fact[k - s - 1] / fact[k])
                .collect()
        })
        .collect()
}

/// The margin reading accumulation column `column`, when exactly one does (a leaf weight there
/// then adds to one margin only).
fn only_margin(margin_of_column: &[Vec<usize>], column: u32) -> Option<usize> {
    match margin_of_column[column as usize][..] {
        [m] => Some(m),
        _ => None,
    }
}

/// Elementary symmetric polynomials e_0..e_len of `z`.
fn elementary(z: impl Iterator<Item = f64>, e: &mut Vec<f64>) {
    e.clear();
    e.push(1.0);
    for v in z {
        e.push(0.0);
        for m in (1..e.len()).rev() {
            e[m] += v * e[m - 1];
        }
    }
}

/// G(A) = sum_s w(s,k) e_{|A|-s}(z_A), from e(z_A).
fn g_of(e: &[f64], w: &[f64]) -> f64 {
    let a = e.len() - 1;
    (0..=a).map(|s| w[s] * e[a - s]).sum()
}

impl TreeShap {
    /// `covers[tree_id][node_id]` as in covers.json (ONNX tree and node ids).
    pub fn new(ensemble: &TreeEnsemble, covers: &[Vec<f64>]) -> Result<Self, TreeError> {
        Self::build(ensemble, covers, grouped::GROUP_BITS)
    }

    /// As [`TreeShap::new`] with per-leaf tables only, no tree grouped: the same values, for
    /// benchmarks that measure what grouping gains.
    pub fn per_leaf(ensemble: &TreeEnsemble, covers: &[Vec<f64>]) -> Result<Self, TreeError> {
        Self::build(ensemble, covers, 0)
    }

    /// As [`TreeShap::new`], grouping trees of depth up to `group_bits` (0: none).
    fn build(
        ensemble: &TreeEnsemble,
        covers: &[Vec<f64>],
        group_bits: usize,
    ) -> Result<Self, TreeError> {
        if !ensemble.is_additive() {
            return Err(TreeError::Covers(
                "TreeSHAP needs a SUM or AVERAGE ensemble".into(),
            ));
        }
        let shapley_w = shapley_weights();
        let mut this = TreeShap {
            n_features: ensemble.n_features.max(ensemble.min_features),
            margins: ensemble.margins.clone(),
            scale: ensemble.margin_scale,
            margin_of_column: vec![Vec::new(); ensemble.n_columns],
            expected: Vec::new(),
            trees: Vec::with_capacity(ensemble.trees.len()),
            feats: Vec::new(),
            zs: Vec::new(),
            cs: Vec::new(),
            weights: Vec::new(),
            tables: Vec::new(),
            contributions: Vec::new(),
            shapley_w,
            max_nodes: 0,
            groups: Groups::default(),
            max_words: 0,
        };
        let mut groups = Groups::default();
        for (m, mc) in this.margins.iter().enumerate() {
            this.margin_of_column[mc.src].push(m);
        }
        let mut column_mean = vec![0.0f64; ensemble.n_columns];
        for tree in &ensemble.trees {
            let tree_covers = usize::try_from(tree.onnx_id)
                .ok()
                .and_then(|t| covers.get(t))
                .ok_or_else(|| TreeError::Covers(format!("no covers for tree {}", tree.onnx_id)))?;
            let cover = |i: usize| -> Result<f64, TreeError> {
                let id = tree.nodes[i].onnx_id;
                usize::try_from(id)
                    .ok()
                    .and_then(|j| tree_covers.get(j))
                    .copied()
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .ok_or_else(|| {
                        TreeError::Covers(format!(
                            "tree {} node {id}: no valid cover",
                            tree.onnx_id
                        ))
                    })
            };
            let frac = |parent: usize, child: usize| -> Result<f64, TreeError> {
                let parent_cover = cover(parent)?;
                Ok(if parent_cover > 0.0 {
                    cover(child)? / parent_cover
                } else {
                    0.5
                })
            };
            if group_bits > 0 {
                let margin_of =
                    |column: u32| only_margin(&this.margin_of_column, column).map(|m| m as u32);
                let deltas = |zs: &[f64]| leaf_deltas(&this.shapley_w, zs);
                let cx = grouped::Context {
                    bits: group_bits,
                    budget: grouped::GROUP_BUDGET.saturating_sub(groups.len()),
                    margin_of: &margin_of,
                    frac: &frac,
                    deltas: &deltas,
                    scale: this.scale,
                };
                if let Some(g) = GroupedTree::build(tree, &cx, &mut groups, &mut column_mean)? {
                    this.max_words = this.max_words.max(g.words());
                    this.trees.push(STree {
                        inner: Vec::new(),
                        n_nodes: 0,
                        fast: Vec::new(),
                        leaves: Vec::new(),
                        grouped: Some(g),
                    });
                    continue;
                }
            }

            // Preorder walk carrying the path's unique features and their z products.
            let mut nodes: Vec<SNode> = Vec::with_capacity(tree.nodes.len());
            let mut leaves = Vec::new();
            let mut fast = Vec::new();
            // (canonical index, index in `nodes` reserved, path features, path z)
            let mut stack: Vec<(usize, usize, Vec<u32>, Vec<f64>)> =
                vec![(0, 0, Vec::new(), Vec::new())];
            nodes.push(placeholder());
            while let Some((i, at, path_f, path_z)) = stack.pop() {
                match &tree.nodes[i].kind {
                    NodeKind::Leaf { .. } => {
                        let k = path_f.len();
                        if k > MAX_PATH_FEATURES {
                            return Err(TreeError::Covers(format!(
                                "tree {} has a path over {k} distinct features (max {MAX_PATH_FEATURES})",
                                tree.onnx_id
                            )));
                        }
                        let f0 = this.feats.len() as u32;
                        this.feats.extend(&path_f);
                        this.zs.extend(&path_z);
                        let any_zero = path_z.iter().any(|&z| z <= 0.0);
                        this.cs.extend(path_z.iter().map(|&z| {
                            if z > 0.0 {
                                (1.0 - z) / z
                            } else {
                                0.0
                            }
                        }));
                        let reach: f64 = path_z.iter().product();
                        let w0 = this.weights.len() as u32;
                        for w in tree.leaf_weights(i) {
                            this.weights.push((w.column, w.value));
                            column_mean[w.column as usize] += w.value * reach;
                        }
                        let wn = this.weights.len() as u32 - w0;
                        let table = if k <= MAX_TABLE_K
                            && !any_zero
                            && this.tables.len() + (1 << k) <= TABLE_BUDGET
                        {
                            let off = this.tables.len();
                            this.tables.extend(h_table(&this.shapley_w, &path_z));
                            Some(off)
                        } else {
                            None
                        };
                        let single_margin =
                            (wn == 1)
                                .then(|| this.weights[w0 as usize])
                                .and_then(|(col, v)| {
                                    only_margin(&this.margin_of_column, col).map(|m| (m, v))
                                });
                        match (table, single_margin) {
                            (Some(off), Some((m, v)))
                                if k > 0
                                    && k <= MAX_FAST_K
                                    && this.contributions.len() + (k << k) <= FAST_BUDGET =>
                            {
                                // Expand the leaf's H table into every slot's contribution for
                                // every pattern t, scaled by the leaf value; H itself is dropped.
                                let sv = this.scale * v;
                                let h = &this.tables[off..off + (1 << k)];
                                let at_c = this.contributions.len();
                                let deltas = expand(&path_z, h);
                                this.contributions.extend(deltas.iter().map(|d| sv * d));
                                this.tables.truncate(off);
                                fast.push(FastLeaf {
                                    node: at as u32,
                                    k: k as u32,
                                    f0,
                                    table: at_c as u32,
                                    margin: m as u32,
                                });
                            }
                            _ => leaves.push(SLeaf {
                                node: at as u32,
                                k: k as u8,
                                f0,
                                table,
                                w0,
                                wn,
                            }),
                        }
                        nodes[at] = SNode {
                            is_leaf: true,
                            ..placeholder()
                        };
                    }
                    NodeKind::Branch {
                        feature,
                        threshold,
                        mode,
                        missing_true,
                        true_child,
                        false_child,
                    } => {
                        let slot = path_f
                            .iter()
                            .position(|f| f == feature)
                            .unwrap_or(path_f.len());
                        let tc = nodes.len();
                        nodes.push(placeholder());
                        nodes.push(placeholder());
                        nodes[at] = SNode {
                            feature: *feature,
                            threshold: *threshold,
                            mode: *mode,
                            missing_true: *missing_true,
                            true_child: tc as u32,
                            false_child: tc as u32 + 1,
                            slot: slot.min(u8::MAX as usize) as u8,
                            is_leaf: false,
                        };
                        for (child, child_at) in [(*true_child, tc), (*false_child, tc + 1)] {
                            let child = child as usize;
                            let frac = frac(i, child)?;
                            let (mut f, mut z) = (path_f.clone(), path_z.clone());
                            if slot == f.len() {
                                f.push(*feature);
                                z.push(frac);
                            } else {
                                z[slot] *= frac;
                            }
                            stack.push((child, child_at, f, z));
                        }
                    }
                }
            }
            this.max_nodes = this.max_nodes.max(nodes.len());
            let inner = nodes
                .iter()
                .enumerate()
                .filter(|(_, nd)| !nd.is_leaf)
                .map(|(at, nd)| SInner {
                    at: at as u32,
                    feature: nd.feature,
                    threshold: nd.threshold,
                    mode: nd.mode,
                    missing_true: nd.missing_true,
                    true_child: nd.true_child,
                    false_child: nd.false_child,
                    bit: 1u64 << (nd.slot as u32 & 63),
                })
                .collect();
            this.trees.push(STree {
                inner,
                n_nodes: nodes.len(),
                fast,
                leaves,
                grouped: None,
            });
        }
        this.groups = groups;
        this.expected = this
            .margins
            .iter()
            .map(|mc| mc.offset + this.scale * column_mean[mc.src])
            .collect();
        if this.feats.iter().any(|&f| f as usize >= this.n_features) {
            return Err(TreeError::Covers(
                "a tree reads a feature beyond the input width".into(),
            ));
        }
        Ok(this)
    }

    /// Covers from routing a reference sample (`n` rows of `ensemble.n_features`):
    /// `covers[tree_id][node_id]` = rows reaching the node.
    pub fn covers_from_sample(ensemble: &TreeEnsemble, rows: &[f32], n: usize) -> Vec<Vec<f64>> {
        let width = rows.len().checked_div(n).unwrap_or(0);
        let max_tree = ensemble
            .trees
            .iter()
            .map(|t| t.onnx_id.max(0) as usize)
            .max()
            .unwrap_or(0);
        let mut covers = vec![Vec::new(); max_tree + 1];
        for tree in &ensemble.trees {
            let max_node = tree
                .nodes
                .iter()
                .map(|n| n.onnx_id.max(0) as usize)
                .max()
                .unwrap_or(0);
            let mut c = vec![0.0f64; max_node + 1];
            if width >= ensemble.min_features {
                for row in rows.chunks_exact(width).take(n) {
                    let mut at = Some(0usize);
                    while let Some(i) = at {
                        c[tree.nodes[i].onnx_id.max(0) as usize] += 1.0;
                        at = tree.child(i, row);
                    }
                }
            }
            covers[tree.onnx_id.max(0) as usize] = c;
        }
        covers
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_margins(&self) -> usize {
        self.margins.len()
    }

    /// Expected margin per margin column (the SHAP base value).
    pub fn expected_value(&self) -> &[f64] {
        &self.expected
    }

    /// Contributions of one row: `n_margins x (n_features + 1)`, the last column being the
    /// expected value; each row of `out` sums to the margin.
    ///
    /// # Panics
    /// If `row` is shorter than `n_features` or `out` shorter than `n_margins * (n_features + 1)`.
    pub fn shap_row(&self, row: &[f32], out: &mut [f64]) {
        self.shap_batch(&row[..self.n_features], 1, out);
    }

    /// Contributions of `n` rows (`n x n_features`, row-major) into `out`
    /// (`n x n_margins x (n_features + 1)`), as [`TreeShap::shap_row`] lays out one row.
    ///
    /// Rows are processed in blocks of [`BLOCK`], tree by tree and, within a tree, leaf by leaf
    /// with the rows innermost: a leaf's features, cover ratios and table are loaded once per
    /// block, the table lookups of one tree stay in cache, and the additions of different rows
    /// do not wait on each other (one row at a time, every leaf adds to the same few features,
    /// a chain of dependent additions).
    ///
    /// # Panics
    /// If `rows` is shorter than `n * n_features` or `out` shorter than
    /// `n * n_margins * (n_features + 1)`.
    pub fn shap_batch(&self, rows: &[f32], n: usize, out: &mut [f64]) {
        let nf = self.n_features;
        let per_row = self.margins.len() * (nf + 1);
        let rows = &rows[..n * nf];
        let out = &mut out[..n * per_row];
        out.iter_mut().for_each(|o| *o = 0.0);
        if per_row == 0 {
            return;
        }
        let mut scratch = Scratch {
            masks: vec![0u64; self.max_nodes * BLOCK],
            go: vec![0u64; self.max_words * BLOCK],
            cols: vec![0.0f32; if self.max_words > 0 { nf * BLOCK } else { 0 }],
            delta: vec![0.0f64; MAX_PATH_FEATURES],
            e: Vec::with_capacity(MAX_PATH_FEATURES + 1),
        };
        for (b, block_out) in out.chunks_mut(BLOCK * per_row).enumerate() {
            let nb = block_out.len() / per_row;
            let block_rows = &rows[b * BLOCK * nf..(b * BLOCK + nb) * nf];
            if self.max_words > 0 {
                // Grouped trees read the block by feature.
                for (r, row) in block_rows.chunks_exact(nf).enumerate() {
                    for (f, &x) in row.iter().enumerate() {
                        scratch.cols[f * nb + r] = x;
                    }
                }
            }
            for tree in &self.trees {
                self.tree_block(tree, block_rows, nb, block_out, &mut scratch);
            }
            for o in block_out.chunks_exact_mut(per_row) {
                for (m, &ev) in self.expected.iter().enumerate() {
                    o[m * (nf + 1) + nf] = ev;
                }
            }
        }
    }

    /// Adds one tree's contributions for the `nb` rows of a block to `out` (`nb` rows of
    /// `n_margins x (F + 1)`).
    fn tree_block(&self, tree: &STree, rows: &[f32], nb: usize, out: &mut [f64], s: &mut Scratch) {
        let nf = self.n_features;
        let width = nf + 1;
        let per_row = self.margins.len() * width;
        if let Some(g) = &tree.grouped {
            let at = Layout { per_row, width };
            let cols = &s.cols[..nf * nb];
            g.add_block(&self.groups, cols, &mut s.go, &mut out[..nb * per_row], at);
            return;
        }
        // masks[node * BLOCK + r]: slots of the path features row r does not follow down to
        // `node`. Nodes are stored parents-first, so one forward pass fills every mask.
        let masks = &mut s.masks[..tree.n_nodes * BLOCK];
        masks[..nb].iter_mut().for_each(|m| *m = 0);
        for nd in &tree.inner {
            let (at, tc, fc) = (
                nd.at as usize * BLOCK,
                nd.true_child as usize * BLOCK,
                nd.false_child as usize * BLOCK,
            );
            for r in 0..nb {
                let go_true = crate::score::tree::Node::goes_true(
                    rows[r * nf + nd.feature as usize],
                    nd.threshold,
                    nd.mode,
                    nd.missing_true,
                );
                // Branch-free: the outcome is as unpredictable as the data.
                let m = masks[at + r];
                let went_true = 0u64.wrapping_sub(u64::from(go_true));
                masks[tc + r] = m | (nd.bit & !went_true);
                masks[fc + r] = m | (nd.bit & went_true);
            }
        }
        for leaf in &tree.fast {
            let masks = &masks[leaf.node as usize * BLOCK..][..nb];
            let at = Layout { per_row, width };
            match leaf.k {
                1 => self.fast_leaf(1, leaf, masks, out, at),
                2 => self.fast_leaf(2, leaf, masks, out, at),
                3 => self.fast_leaf(3, leaf, masks, out, at),
                4 => self.fast_leaf(4, leaf, masks, out, at),
                5 => self.fast_leaf(5, leaf, masks, out, at),
                6 => self.fast_leaf(6, leaf, masks, out, at),
                7 => self.fast_leaf(7, leaf, masks, out, at),
                8 => self.fast_leaf(8, leaf, masks, out, at),
                k => self.fast_leaf(k as usize, leaf, masks, out, at),
            }
        }
        for leaf in &tree.leaves {
            let k = leaf.k as usize;
            if k == 0 {
                continue;
            }
            let full = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
            let f0 = leaf.f0 as usize;
            let feats = &self.feats[f0..f0 + k];
            for r in 0..nb {
                let t = full & !masks[leaf.node as usize * BLOCK + r];
                let delta = &mut s.delta[..k];
                match leaf.table {
                    Some(off) => {
                        let h = &self.tables[off..off + (1 << k)];
                        let cs = &self.cs[f0..f0 + k];
                        let h_t = h[t as usize];
                        for (b, d) in delta.iter_mut().enumerate() {
                            *d = if t >> b & 1 == 1 {
                                cs[b] * h[(t ^ (1 << b)) as usize]
                            } else {
                                -h_t
                            };
                        }
                    }
                    None => self.direct(&self.zs[f0..f0 + k], t, delta, &mut s.e),
                }
                let row_out = &mut out[r * per_row..(r + 1) * per_row];
                for &(col, v) in &self.weights[leaf.w0 as usize..(leaf.w0 + leaf.wn) as usize] {
                    for &m in &self.margin_of_column[col as usize] {
                        let phi = &mut row_out[m * width..(m + 1) * width];
                        let sv = self.scale * v;
                        for (&f, &d) in feats.iter().zip(delta.iter()) {
                            phi[f as usize] += sv * d;
                        }
                    }
                }
            }
        }
    }

    /// A [`FastLeaf`] with `k` path features over a block: each row adds the k contributions
    /// stored for its pattern t. Always inlined, so the callers' literal `k` unrolls the loop.
    #[inline(always)]
    fn fast_leaf(&self, k: usize, leaf: &FastLeaf, masks: &[u64], out: &mut [f64], at: Layout) {
        let full = (1u64 << k) - 1;
        let f0 = leaf.f0 as usize;
        let table = &self.contributions[leaf.table as usize..][..k << k];
        let feats = &self.feats[f0..f0 + k];
        let base = leaf.margin as usize * at.width;
        for (r, &mask) in masks.iter().enumerate() {
            let t = (full & !mask) as usize;
            let values = &table[t * k..][..k];
            let phi = &mut out[r * at.per_row + base..][..at.width];
            for (&f, &v) in feats.iter().zip(values) {
                phi[f as usize] += v;
            }
        }
    }

    /// The per-leaf formula without a table (long paths, zero cover fractions).
    fn direct(&self, zs: &[f64], t: u64, delta: &mut [f64], e: &mut Vec<f64>) {
        direct(&self.shapley_w, zs, t, delta, e);
    }
}

/// The per-leaf formula without a table: slot b's contribution (without the leaf value) for a
/// row following the slots in t.
fn direct(shapley_w: &[Vec<f64>], zs: &[f64], t: u64, delta: &mut [f64], e: &mut Vec<f64>) {
    let k = zs.len();
    let w = &shapley_w[k];
    let in_t = |b: usize| t >> b & 1 == 1;
    let z_out: f64 = (0..k).filter(|&b| !in_t(b)).map(|b| zs[b]).product();
    let all = t.count_ones() as usize == k;
    let g_t = if all {
        0.0
    } else {
        elementary((0..k).filter(|&b| in_t(b)).map(|b| zs[b]), e);
        g_of(e, w)
    };
    for b in 0..k {
        delta[b] = if in_t(b) {
            elementary((0..k).filter(|&j| j != b && in_t(j)).map(|j| zs[j]), e);
            (1.0 - zs[b]) * z_out * g_of(e, w)
        } else {
            -z_out * g_t
        };
    }
}

/// Contributions of a leaf whose path has these z's, without its value: `k x 2^k`, slot b's
/// for a row following the slots in t at `t * k + b`.
fn leaf_deltas(shapley_w: &[Vec<f64>], zs: &[f64]) -> Vec<f64> {
    if zs.iter().all(|&z| z > 0.0) {
        return expand(zs, &h_table(shapley_w, zs));
    }
    let k = zs.len();
    let mut e = Vec::with_capacity(k + 1);
    let mut out = Vec::with_capacity(k << k);
    let mut delta = vec![0.0; k];
    for t in 0..1u64 << k {
        direct(shapley_w, zs, t, &mut delta, &mut e);
        out.extend(&delta);
    }
    out
}

/// H(t) = Z(U\t) G(t) for every pattern t of a leaf with these path z's (2^k values; the
/// pattern following every slot is never read and holds 0).
fn h_table(shapley_w: &[Vec<f64>], zs: &[f64]) -> Vec<f64> {
    let k = zs.len();
    let w = &shapley_w[k];
    let mut e = Vec::with_capacity(k + 1);
    (0..1usize << k)
        .map(|t| {
            if t == (1 << k) - 1 {
                return 0.0;
            }
            elementary((0..k).filter(|b| t >> b & 1 == 1).map(|b| zs[b]), &mut e);
            let z_out: f64 = (0..k).filter(|b| t >> b & 1 == 0).map(|b| zs[b]).product();
            z_out * g_of(&e, w)
        })
        .collect()
}

/// A leaf's contributions without its value from its H table (every z > 0), as
/// [`leaf_deltas`] lays them out: slot b in t gets (1 - z_b)/z_b H(t \ b), else -H(t).
fn expand(zs: &[f64], h: &[f64]) -> Vec<f64> {
    let k = zs.len();
    let mut out = Vec::with_capacity(k << k);
    for t in 0..1usize << k {
        for (b, &z) in zs.iter().enumerate() {
            out.push(if t >> b & 1 == 1 {
                (1.0 - z) / z * h[t ^ (1 << b)]
            } else {
                -h[t]
            });
        }
    }
    out
}

/// Where one row's contributions sit in a block's output.
#[derive(Clone, Copy)]
struct Layout {
    /// Values per row (`n_margins x width`).
    per_row: usize,
    /// Values per margin (`n_features + 1`).
    width: usize,
}

/// Per-call working memory of [`TreeShap::shap_batch`].
struct Scratch {
    /// Per node and row of a block: slots of the path features the row does not follow.
    masks: Vec<u64>,
    /// Per row of a block: the outcome words of a grouped tree.
    go: Vec<u64>,
    /// The block by feature (`cols[f * nb + r]`), for grouped trees.
    cols: Vec<f32>,
    delta: Vec<f64>,
    e: Vec<f64>,
}

fn placeholder() -> SNode {
    SNode {
        feature: 0,
        threshold: 0.0,
        mode: crate::score::tree::NodeMode::Leq,
        missing_true: false,
        true_child: 0,
        false_child: 0,
        slot: 0,
        is_leaf: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::tree::tests::{random_forest, random_rows, string, Lcg};
    use crate::score::tree::Tree;

    /// Algorithm 1 of Lundberg et al.: E[f(x) | x_S] with cover-weighted descent.
    fn cond_exp(tree: &Tree, covers: &[f64], row: &[f32], s: u32, i: usize) -> f64 {
        match &tree.nodes[i].kind {
            NodeKind::Leaf { .. } => tree.leaf_weights(i)[0].value,
            NodeKind::Branch {
                feature,
                threshold,
                mode,
                missing_true,
                true_child,
                false_child,
            } => {
                let (t, f) = (*true_child as usize, *false_child as usize);
                if s >> feature & 1 == 1 {
                    let go = crate::score::tree::Node::goes_true(
                        row[*feature as usize],
                        *threshold,
                        *mode,
                        *missing_true,
                    );
                    cond_exp(tree, covers, row, s, if go { t } else { f })
                } else {
                    let c = |j: usize| covers[tree.nodes[j].onnx_id as usize];
                    (c(t) * cond_exp(tree, covers, row, s, t)
                        + c(f) * cond_exp(tree, covers, row, s, f))
                        / c(i)
                }
            }
        }
    }

    fn brute_force(e: &TreeEnsemble, covers: &[Vec<f64>], row: &[f32], nf: usize) -> Vec<f64> {
        let v = |s: u32| -> f64 {
            e.trees
                .iter()
                .map(|t| cond_exp(t, &covers[t.onnx_id as usize], row, s, 0))
                .sum()
        };
        let fact = |n: usize| (1..=n).map(|x| x as f64).product::<f64>();
        (0..nf)
            .map(|i| {
                (0u32..1 << nf)
                    .filter(|s| s >> i & 1 == 0)
                    .map(|s| {
                        let k = s.count_ones() as usize;
                        fact(k) * fact(nf - k - 1) / fact(nf) * (v(s | 1 << i) - v(s))
                    })
                    .sum()
            })
            .collect()
    }

    /// Grouped trees in `shap`.
    fn grouped(shap: &TreeShap) -> usize {
        shap.trees.iter().filter(|t| t.grouped.is_some()).count()
    }

    #[test]
    fn matches_brute_force_shapley_and_is_locally_accurate() {
        let modes = [
            "BRANCH_LEQ",
            "BRANCH_LT",
            "BRANCH_GTE",
            "BRANCH_GT",
            "BRANCH_EQ",
            "BRANCH_NEQ",
        ];
        let nf = 5;
        // Depth 8 over 5 features repeats features on paths. Group sizes: none (per-leaf
        // tables), leaf pairs, four leaves, eight leaves.
        for (depth, bits) in [(8, 0), (8, 8), (5, 5), (5, 6), (5, 12)] {
            let mut rng = Lcg(11);
            let b = random_forest(&mut rng, 12, depth, nf as i64, 1, &modes);
            let node = b.regressor(1, vec![string("post_transform", "NONE")]);
            let e = TreeEnsemble::from_node(&node).unwrap();
            let sample = random_rows(&mut rng, 300, nf);
            // Smooth covers (every node reached) so brute force can divide by them.
            let mut covers = TreeShap::covers_from_sample(&e, &sample, 300);
            covers.iter_mut().flatten().for_each(|c| *c += 1.0);
            for tree in &e.trees {
                // Keep parents equal to the sum of their children after smoothing.
                fix_covers(tree, &mut covers[tree.onnx_id as usize], 0);
            }
            let shap = TreeShap::build(&e, &covers, bits).unwrap();
            let want_grouped = if bits == 0 { 0 } else { e.trees.len() };
            assert_eq!(grouped(&shap), want_grouped, "depth {depth}, bits {bits}");
            let rows = random_rows(&mut rng, 20, nf);
            let mut out = vec![0.0; nf + 1];
            for row in rows.chunks(nf) {
                shap.shap_row(row, &mut out);
                let want = brute_force(&e, &covers, row, nf);
                for i in 0..nf {
                    assert!(
                        (out[i] - want[i]).abs() < 1e-9,
                        "depth {depth}, bits {bits}, feature {i}: {} vs {}",
                        out[i],
                        want[i]
                    );
                }
                let mut margin = [0.0f32];
                e.margins(row, 1, nf, &mut margin);
                let total: f64 = out.iter().sum();
                assert!(
                    (total - f64::from(margin[0])).abs() < 1e-5,
                    "{total} vs {}",
                    margin[0]
                );
            }
        }
    }

    #[test]
    fn grouped_trees_equal_per_leaf_tables_with_zero_covers_and_fall_back_for_several_outputs() {
        let nf = 6;
        let mut rng = Lcg(23);
        let b = random_forest(&mut rng, 30, 6, nf as i64, 1, &["BRANCH_LEQ", "BRANCH_GT"]);
        let node = b.regressor(1, vec![string("post_transform", "NONE")]);
        let e = TreeEnsemble::from_node(&node).unwrap();
        // Eight sample rows leave most nodes with a zero cover.
        let sample = random_rows(&mut rng, 8, nf);
        let covers = TreeShap::covers_from_sample(&e, &sample, 8);
        assert!(covers.iter().flatten().any(|&c| c == 0.0));
        let (per_leaf, groups) = (
            TreeShap::build(&e, &covers, 0).unwrap(),
            TreeShap::new(&e, &covers).unwrap(),
        );
        assert_eq!((grouped(&per_leaf), grouped(&groups)), (0, e.trees.len()));
        assert_eq!(per_leaf.expected_value(), groups.expected_value());
        let n = 200;
        let rows = random_rows(&mut rng, n, nf);
        let (mut a, mut b) = (vec![0.0; n * (nf + 1)], vec![0.0; n * (nf + 1)]);
        per_leaf.shap_batch(&rows, n, &mut a);
        groups.shap_batch(&rows, n, &mut b);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() < 1e-9, "value {i}: {x} vs {y}");
        }
        // Leaves with three outputs keep the per-leaf path.
        let b = random_forest(&mut rng, 5, 4, nf as i64, 3, &["BRANCH_LEQ"]);
        let node = b.regressor(3, vec![string("post_transform", "NONE")]);
        let e = TreeEnsemble::from_node(&node).unwrap();
        let covers = TreeShap::covers_from_sample(&e, &random_rows(&mut rng, 50, nf), 50);
        assert_eq!(grouped(&TreeShap::new(&e, &covers).unwrap()), 0);
    }

    #[test]
    fn batches_equal_rows_across_blocks() {
        let mut rng = Lcg(5);
        let nf = 6;
        let b = random_forest(&mut rng, 20, 6, nf as i64, 1, &["BRANCH_LEQ", "BRANCH_GT"]);
        let node = b.regressor(1, vec![string("post_transform", "NONE")]);
        let e = TreeEnsemble::from_node(&node).unwrap();
        let sample = random_rows(&mut rng, 200, nf);
        let covers = TreeShap::covers_from_sample(&e, &sample, 200);
        let shap = TreeShap::new(&e, &covers).unwrap();
        // 150 rows: two full blocks and a partial one.
        let n = 150;
        let rows = random_rows(&mut rng, n, nf);
        let per_row = nf + 1;
        let mut batch = vec![f64::NAN; n * per_row];
        shap.shap_batch(&rows, n, &mut batch);
        let mut one = vec![0.0; per_row];
        for (r, row) in rows.chunks(nf).enumerate() {
            shap.shap_row(row, &mut one);
            assert_eq!(&batch[r * per_row..(r + 1) * per_row], &one[..], "row {r}");
        }
    }

    fn fix_covers(tree: &Tree, c: &mut [f64], i: usize) -> f64 {
        let v = match &tree.nodes[i].kind {
            NodeKind::Leaf { .. } => c[tree.nodes[i].onnx_id as usize],
            NodeKind::Branch {
                true_child,
                false_child,
                ..
            } => {
                fix_covers(tree, c, *true_child as usize)
                    + fix_covers(tree, c, *false_child as usize)
            }
        };
        c[tree.nodes[i].onnx_id as usize] = v;
        v
    }

    #[test]
    fn direct_formula_equals_tables() {
        let shap_w = shapley_weights();
        let shap = TreeShap {
            n_features: 0,
            margins: vec![],
            scale: 1.0,
            margin_of_column: vec![],
            expected: vec![],
            trees: vec![],
            feats: vec![],
            zs: vec![],
            cs: vec![],
            weights: vec![],
            tables: vec![],
            contributions: vec![],
            shapley_w: shap_w,
            max_nodes: 0,
            groups: Groups::default(),
            max_words: 0,
        };
        let zs = [0.3, 0.6, 0.9, 0.45];
        let k = zs.len();
        let mut e = Vec::new();
        let h = h_table(&shap.shapley_w, &zs);
        let mut delta = vec![0.0; k];
        for t in 0..(1u64 << k) {
            shap.direct(&zs, t, &mut delta, &mut e);
            for b in 0..k {
                let want = if t >> b & 1 == 1 {
                    (1.0 - zs[b]) / zs[b] * h[(t ^ 1 << b) as usize]
                } else {
                    -h[t as usize]
                };
                assert!((delta[b] - want).abs() < 1e-12);
            }
        }
    }
}
