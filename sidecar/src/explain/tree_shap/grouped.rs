//! Whole subtrees explained by one table lookup.
//!
//! A leaf's contributions depend on the row only through the way the row goes at each branch
//! of the leaf's path (that gives T, the path features the row follows). Take a branch g with
//! d branches above it and s branches in its subtree: the summed contributions of every leaf
//! under g depend on those d + s outcomes alone. When d + s <= `GROUP_BITS`, they are
//! tabulated once for all 2^(d+s) outcome patterns over the features of those branches, and a
//! row costs, per group, one gather of its outcome bits and one addition per feature, instead
//! of, per leaf, a pattern and k additions. A depth-6 tree becomes 16 groups of 4 leaves, a
//! depth-5 tree 8 groups of 4.
//!
//! Branches are numbered in preorder, so a subtree's outcomes are one run of bits; a row's
//! outcomes for a tree are `words` u64s (at most 255 branches: the tree's depth is at most
//! `GROUP_BITS`). Trees this does not fit (deeper, a leaf with several outputs, past the table
//! budget) keep the per-leaf tables of the parent module.

use crate::score::tree::{Node, NodeKind, NodeMode, Tree, TreeError};

use super::Layout;

/// Most branch outcomes indexing one table (2^8 patterns); also the deepest tree grouped.
pub(super) const GROUP_BITS: usize = 8;
/// Most outcomes a caller may ask for (tests try larger groups).
const MAX_GROUP_BITS: usize = 12;
/// Total entries of every group table (f64): 8 M = 64 MiB; later trees use per-leaf tables.
pub(super) const GROUP_BUDGET: usize = 8 << 20;

/// A branch as the outcome pass reads it.
#[derive(Clone, Debug)]
struct Branch {
    feature: u32,
    threshold: f64,
    mode: NodeMode,
    missing_true: bool,
}

/// One subtree's table. Bit j < `n_anc` of a pattern is the outcome of the j-th branch above
/// the subtree's root (root first); bit `n_anc + q` that of branch `start + q`.
#[derive(Clone, Debug)]
struct Group {
    anc: [u8; MAX_GROUP_BITS],
    n_anc: u8,
    start: u8,
    len: u8,
    /// Features `Groups::feats[f0..f0 + nf]`.
    f0: u32,
    nf: u32,
    /// `Groups::values[values + pattern * nf + j]`: the contribution to feature j (leaf values
    /// and the margin scale included).
    values: usize,
    margin: u32,
}

/// The tables of every grouped tree of an ensemble.
#[derive(Debug, Default)]
pub(super) struct Groups {
    feats: Vec<u32>,
    values: Vec<f64>,
}

impl Groups {
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }
}

/// A tree explained by groups.
#[derive(Clone, Debug)]
pub(super) struct GroupedTree {
    /// In preorder.
    branches: Vec<Branch>,
    words: usize,
    groups: Vec<Group>,
}

/// What [`GroupedTree::build`] needs from the ensemble around the tree.
pub(super) struct Context<'a> {
    /// Most outcomes per table (and deepest tree): `GROUP_BITS`; tests try others.
    pub bits: usize,
    /// Table entries still allowed.
    pub budget: usize,
    /// The margin a leaf's weight column is read by, when exactly one is.
    pub margin_of: &'a dyn Fn(u32) -> Option<u32>,
    /// Cover fraction of a child (tree node indices): child cover / parent cover.
    pub frac: &'a dyn Fn(usize, usize) -> Result<f64, TreeError>,
    /// Unscaled contributions of a leaf with these path z's: `k x 2^k`, slot b at pattern t at
    /// `t * k + b`.
    pub deltas: &'a dyn Fn(&[f64]) -> Vec<f64>,
    pub scale: f64,
}

/// One branch on the way from a group's root (or above it) down to a leaf.
#[derive(Clone, Copy)]
struct Step {
    /// The branch's bit in the group's pattern.
    bit: u32,
    went_true: bool,
    feature: u32,
    frac: f64,
}

impl GroupedTree {
    /// The tree as groups, its leaves' weight x reach added to `column_mean`; `None` (and
    /// nothing added) when it does not fit (see the module's text).
    pub(super) fn build(
        tree: &Tree,
        cx: &Context<'_>,
        store: &mut Groups,
        column_mean: &mut [f64],
    ) -> Result<Option<GroupedTree>, TreeError> {
        if tree.depth as usize > cx.bits.min(MAX_GROUP_BITS) || tree.nodes.is_empty() {
            return Ok(None);
        }
        let mut margin = None;
        for (i, node) in tree.nodes.iter().enumerate() {
            if let NodeKind::Leaf { .. } = node.kind {
                let m = match tree.leaf_weights(i) {
                    [w] => (cx.margin_of)(w.column),
                    _ => None,
                };
                match (m, margin) {
                    (None, _) => return Ok(None),
                    (Some(m), Some(prev)) if m != prev => return Ok(None),
                    (Some(m), _) => margin = Some(m),
                }
            }
        }
        let Some(margin) = margin else {
            return Ok(None);
        };
        // Preorder numbers and subtree sizes (in branches).
        let mut pre = vec![u32::MAX; tree.nodes.len()];
        let mut size = vec![0u32; tree.nodes.len()];
        let mut branches = Vec::new();
        number(tree, 0, &mut pre, &mut size, &mut branches);
        if branches.len() > 255 {
            return Ok(None);
        }
        let mut roots = Vec::new();
        select(tree, cx.bits, 0, &mut Vec::new(), &size, &mut roots)?;
        let needed: usize = roots
            .iter()
            .map(|(i, path)| {
                let feats = group_features(tree, *i, path);
                feats.len() << (path.len() + size[*i] as usize)
            })
            .sum();
        if needed > cx.budget {
            return Ok(None);
        }
        let mut groups = Vec::with_capacity(roots.len());
        for (root, above) in roots {
            let feats = group_features(tree, root, &above);
            let n_anc = above.len();
            let len = size[root] as usize;
            let start = if len > 0 { pre[root] as usize } else { 0 };
            let mut anc = [0u8; MAX_GROUP_BITS];
            for (a, &(node, _)) in anc.iter_mut().zip(&above) {
                *a = pre[node] as u8;
            }
            let bits = n_anc + len;
            let nf = feats.len();
            let mut table = vec![0.0f64; nf << bits];
            // Steps above the root: bit j, the way toward the root.
            let mut path: Vec<Step> = above
                .iter()
                .enumerate()
                .map(|(j, &(node, went_true))| {
                    let (feature, child) = branch_way(tree, node, went_true);
                    Ok(Step {
                        bit: j as u32,
                        went_true,
                        feature,
                        frac: (cx.frac)(node, child)?,
                    })
                })
                .collect::<Result<_, TreeError>>()?;
            let at = Placement {
                n_anc: n_anc as u32,
                start: start as u32,
                bits,
                feats: &feats,
            };
            leaves(
                tree,
                root,
                &mut path,
                &pre,
                cx,
                &at,
                &mut table,
                column_mean,
            )?;
            if nf == 0 {
                continue;
            }
            let f0 = store.feats.len() as u32;
            store.feats.extend(&feats);
            let values = store.values.len();
            store.values.extend(&table);
            groups.push(Group {
                anc,
                n_anc: n_anc as u8,
                start: start as u8,
                len: len as u8,
                f0,
                nf: nf as u32,
                values,
                margin,
            });
        }
        Ok(Some(GroupedTree {
            words: branches.len().div_ceil(64).max(1),
            branches,
            groups,
        }))
    }

    /// Outcome words needed per row.
    pub(super) fn words(&self) -> usize {
        self.words
    }

    /// Adds this tree's contributions for the `nb` rows of a block to `out` (one `at.per_row`
    /// run per row). `cols` is the block by feature (`cols[f * nb + r]`), so a branch compares
    /// one contiguous column; `go` holds at least `words() * nb` words.
    pub(super) fn add_block(
        &self,
        store: &Groups,
        cols: &[f32],
        go: &mut [u64],
        out: &mut [f64],
        at: Layout,
    ) {
        let nb = out.len() / at.per_row;
        // go[w * nb + r]: word w of row r's outcomes, bit p % 64 for branch p.
        let go = &mut go[..self.words * nb];
        go.iter_mut().for_each(|w| *w = 0);
        for (p, b) in self.branches.iter().enumerate() {
            let col = &cols[b.feature as usize * nb..][..nb];
            let word = &mut go[(p >> 6) * nb..][..nb];
            let shift = p & 63;
            // One loop per comparison (the mode and the missing rule matched once per branch,
            // not per row), over contiguous values: the compiler vectorises it.
            let t = b.threshold;
            match (b.mode, b.missing_true) {
                (NodeMode::Leq, false) => fill(col, word, shift, |x| f64::from(x) <= t),
                (NodeMode::Lt, false) => fill(col, word, shift, |x| f64::from(x) < t),
                (NodeMode::Gte, false) => fill(col, word, shift, |x| f64::from(x) >= t),
                (NodeMode::Gt, false) => fill(col, word, shift, |x| f64::from(x) > t),
                (NodeMode::Eq, false) => fill(col, word, shift, |x| f64::from(x) == t),
                // NaN is != everything: sent true whatever `missing_true` says.
                (NodeMode::Neq, _) => fill(col, word, shift, |x| f64::from(x) != t),
                (mode, true) => fill(col, word, shift, |x| {
                    x.is_nan() || Node::goes_true(x, t, mode, false)
                }),
            }
        }
        for g in &self.groups {
            // Literal widths unroll the additions.
            let go = &*go;
            match g.nf {
                1 => add_group::<1>(g, store, go, out, at),
                2 => add_group::<2>(g, store, go, out, at),
                3 => add_group::<3>(g, store, go, out, at),
                4 => add_group::<4>(g, store, go, out, at),
                5 => add_group::<5>(g, store, go, out, at),
                6 => add_group::<6>(g, store, go, out, at),
                7 => add_group::<7>(g, store, go, out, at),
                8 => add_group::<8>(g, store, go, out, at),
                _ => add_group::<0>(g, store, go, out, at),
            }
        }
    }
}

/// Sets bit `shift` of `word[r]` where `went(col[r])`: onnxruntime's rule, as
/// `Node::goes_true` gives it.
#[inline(always)]
fn fill(col: &[f32], word: &mut [u64], shift: usize, went: impl Fn(f32) -> bool) {
    for (w, &x) in word.iter_mut().zip(col) {
        *w |= u64::from(went(x)) << shift;
    }
}

/// One group's contributions for every row of a block (`go` word-major, as
/// [`GroupedTree::add_block`] fills it); `K` is the group's feature count, or 0 for any count.
#[inline(always)]
fn add_group<const K: usize>(g: &Group, store: &Groups, go: &[u64], out: &mut [f64], at: Layout) {
    let nb = out.len() / at.per_row;
    let k = if K == 0 { g.nf as usize } else { K };
    let feats = &store.feats[g.f0 as usize..][..k];
    let values = &store.values[g.values..][..k << (g.n_anc + g.len)];
    let anc = &g.anc[..g.n_anc as usize];
    let (start, len) = (g.start as usize, g.len as usize);
    let base = g.margin as usize * at.width;
    // The subtree's run of bits: in one word, or across two.
    let (w, o) = (start >> 6, start & 63);
    let split = len > 0 && o + len > 64;
    let mask = (1u64 << len) - 1;
    for r in 0..nb {
        let mut run = if len == 0 { 0 } else { go[w * nb + r] >> o };
        if split {
            run |= go[(w + 1) * nb + r] << (64 - o);
        }
        let mut pattern = ((run & mask) as usize) << anc.len();
        for (j, &a) in anc.iter().enumerate() {
            let a = a as usize;
            pattern |= ((go[(a >> 6) * nb + r] >> (a & 63)) as usize & 1) << j;
        }
        let v = &values[pattern * k..][..k];
        let phi = &mut out[r * at.per_row + base..][..at.width];
        for (&f, &c) in feats.iter().zip(v) {
            phi[f as usize] += c;
        }
    }
}

/// Numbers the branches under `i` in preorder (true child first); returns their count.
fn number(tree: &Tree, i: usize, pre: &mut [u32], size: &mut [u32], out: &mut Vec<Branch>) -> u32 {
    match tree.nodes[i].kind {
        NodeKind::Leaf { .. } => 0,
        NodeKind::Branch {
            feature,
            threshold,
            mode,
            missing_true,
            true_child,
            false_child,
        } => {
            pre[i] = out.len() as u32;
            out.push(Branch {
                feature,
                threshold,
                mode,
                missing_true,
            });
            let n = 1
                + number(tree, true_child as usize, pre, size, out)
                + number(tree, false_child as usize, pre, size, out);
            size[i] = n;
            n
        }
    }
}

/// Group roots, largest first from the top: a node is a root when the branches above it and
/// in its subtree number at most `bits`. Each root comes with the branches above it and the
/// way taken at each.
fn select(
    tree: &Tree,
    bits: usize,
    i: usize,
    above: &mut Vec<(usize, bool)>,
    size: &[u32],
    roots: &mut Vec<(usize, Vec<(usize, bool)>)>,
) -> Result<(), TreeError> {
    if above.len() + size[i] as usize <= bits {
        roots.push((i, above.clone()));
        return Ok(());
    }
    let NodeKind::Branch {
        true_child,
        false_child,
        ..
    } = tree.nodes[i].kind
    else {
        // A leaf deeper than `bits`: `build` checked the depth first.
        return Err(TreeError::Covers("a leaf deeper than the tree".into()));
    };
    for (child, went_true) in [(true_child, true), (false_child, false)] {
        above.push((i, went_true));
        select(tree, bits, child as usize, above, size, roots)?;
        above.pop();
    }
    Ok(())
}

/// The distinct features of the branches above `root` and under it, in first-seen order.
fn group_features(tree: &Tree, root: usize, above: &[(usize, bool)]) -> Vec<u32> {
    let mut feats = Vec::new();
    let mut add = |i: usize| {
        if let NodeKind::Branch { feature, .. } = tree.nodes[i].kind {
            if !feats.contains(&feature) {
                feats.push(feature);
            }
        }
    };
    above.iter().for_each(|&(i, _)| add(i));
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        add(i);
        if let NodeKind::Branch {
            true_child,
            false_child,
            ..
        } = tree.nodes[i].kind
        {
            stack.push(true_child as usize);
            stack.push(false_child as usize);
        }
    }
    feats
}

/// The feature of branch `i` and its child on the `went_true` side.
fn branch_way(tree: &Tree, i: usize, went_true: bool) -> (u32, usize) {
    match tree.nodes[i].kind {
        NodeKind::Branch {
            feature,
            true_child,
            false_child,
            ..
        } => (
            feature,
            if went_true { true_child } else { false_child } as usize,
        ),
        NodeKind::Leaf { .. } => unreachable!("only branches are above a node"),
    }
}

/// Where a group's leaves write: their branches' bits and the group's features.
struct Placement<'a> {
    n_anc: u32,
    start: u32,
    bits: usize,
    feats: &'a [u32],
}

/// Adds the contributions of every leaf under `i` (reached by `path`) to the group's table,
/// for every outcome pattern.
#[allow(clippy::too_many_arguments)]
fn leaves(
    tree: &Tree,
    i: usize,
    path: &mut Vec<Step>,
    pre: &[u32],
    cx: &Context<'_>,
    at: &Placement<'_>,
    table: &mut [f64],
    column_mean: &mut [f64],
) -> Result<(), TreeError> {
    match tree.nodes[i].kind {
        NodeKind::Branch {
            feature,
            true_child,
            false_child,
            ..
        } => {
            for (child, went_true) in [(true_child as usize, true), (false_child as usize, false)] {
                path.push(Step {
                    bit: at.n_anc + pre[i] - at.start,
                    went_true,
                    feature,
                    frac: (cx.frac)(i, child)?,
                });
                leaves(tree, child, path, pre, cx, at, table, column_mean)?;
                path.pop();
            }
            Ok(())
        }
        NodeKind::Leaf { .. } => {
            let w = tree.leaf_weights(i)[0];
            // The path's distinct features (slots), their z, and each step's slot.
            let mut slot_feature: Vec<u32> = Vec::with_capacity(path.len());
            let mut zs: Vec<f64> = Vec::with_capacity(path.len());
            let mut step_slot = Vec::with_capacity(path.len());
            for s in path.iter() {
                let slot = match slot_feature.iter().position(|&f| f == s.feature) {
                    Some(b) => {
                        zs[b] *= s.frac;
                        b
                    }
                    None => {
                        slot_feature.push(s.feature);
                        zs.push(s.frac);
                        zs.len() - 1
                    }
                };
                step_slot.push(slot);
            }
            column_mean[w.column as usize] +=
                w.value * path.iter().map(|s| s.frac).product::<f64>();
            let k = zs.len();
            if k == 0 {
                return Ok(());
            }
            let deltas = (cx.deltas)(&zs);
            let sv = cx.scale * w.value;
            let nf = at.feats.len();
            let pos: Vec<usize> = slot_feature
                .iter()
                .map(|f| {
                    at.feats
                        .iter()
                        .position(|g| g == f)
                        .expect("a group's feature")
                })
                .collect();
            let full = (1usize << k) - 1;
            for pattern in 0..1usize << at.bits {
                let mut missed = 0usize;
                for (s, &slot) in path.iter().zip(&step_slot) {
                    if (pattern >> s.bit & 1 == 1) != s.went_true {
                        missed |= 1 << slot;
                    }
                }
                let t = full & !missed;
                let d = &deltas[t * k..][..k];
                let row = &mut table[pattern * nf..][..nf];
                for (b, &p) in pos.iter().enumerate() {
                    row[p] += sv * d[b];
                }
            }
            Ok(())
        }
    }
}
