//! The compiled forest: every tree in one flat array of 12-byte nodes, walked branch-free.
//!
//! Layout choices, and why:
//! - Every comparison is rewritten to `s * x < T` (s = ±1, applied by flipping the sign bit), with
//!   the child a NaN must take stored first: NaN fails `<`, so missing values need no test.
//!   LEQ/LT/GTE/GT thresholds (f32 or f64) are moved to the neighbouring f32 where needed so the
//!   f32 comparison is exactly the original one.
//! - Children are adjacent, so the next node is `child + cond`: no branch to mispredict.
//! - A leaf points to itself with threshold NaN (`s * x < NaN` is always false): walking a tree a
//!   fixed `depth` steps lands on the leaf whatever its depth, so many walks can be interleaved.
//! - Walks are interleaved 8 at a time (8 rows through one tree, or 8 trees for one row) to hide
//!   the load latency of the dependent node chain; rows are processed in chunks so a chunk's
//!   features stay in L1 while trees stream through.
//!
//! Models outside this form (EQ/NEQ, MIN/MAX, leaves of one tree writing different columns,
//! constant-true comparisons) are evaluated by the exact per-node evaluator instead.

use super::ensemble::{Aggregate, NodeKind, NodeMode, TreeEnsemble};
use super::post::Acc;
use super::wide::{Source, WideForest};

const SIGN: u32 = 0x8000_0000;
const FEATURE: u32 = 0x7fff_ffff;
const LANES: usize = 8;
const CHUNK: usize = 64;
/// Fewer rows than this walk 8 trees at a time for each row: the wide walk's 32 lanes would
/// mostly repeat the last row.
const WIDE_MIN_ROWS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct FNode {
    /// Feature index; the high bit negates the feature value.
    fx: u32,
    t: f32,
    /// Global index of the first child (the NaN side); the second is `child + 1`.
    child: u32,
}

#[derive(Clone, Debug)]
struct FTree {
    root: u32,
    depth: u32,
    /// Columns this tree writes, `cols[c0..c1]`; every leaf writes all of them.
    c0: u32,
    c1: u32,
}

#[derive(Debug)]
pub(crate) struct FastForest {
    nodes: Vec<FNode>,
    /// For leaf nodes: offset of its values in `values_*` (one per tree column).
    leaf_at: Vec<u32>,
    trees: Vec<FTree>,
    cols: Vec<u32>,
    values_f32: Vec<f32>,
    values_f64: Vec<f64>,
    /// Every tree writes exactly one column.
    single_column: bool,
    min_features: usize,
    /// The same forest padded to complete trees for the AVX-512 walk (f32 sums only).
    wide: Option<WideForest>,
}

fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

fn next_down(x: f32) -> f32 {
    -next_up(-x)
}

/// Largest f32 <= t.
fn floor_f32(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) > t {
        next_down(c)
    } else {
        c
    }
}

/// Smallest f32 >= t.
fn ceil_f32(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) < t {
        next_up(c)
    } else {
        c
    }
}

/// `(negate, T)` such that, for every non-NaN f32 x, `pred(x) == (s * x < T)`.
/// `pred` is `x CMP t` (`want_true`) or its negation.
fn normalise(mode: NodeMode, t: f64, want_true: bool) -> Option<(bool, f32)> {
    if t.is_nan() {
        // Every ordered comparison with NaN is false: the predicate is constant.
        return if want_true {
            Some((false, f32::NAN))
        } else {
            None
        };
    }
    // Rewrite as one of x <= c, x < c, x >= c, x > c with c an f32.
    enum Cmp {
        Le(f32),
        Lt(f32),
        Ge(f32),
        Gt(f32),
    }
    let cmp = match (mode, want_true) {
        (NodeMode::Leq, true) | (NodeMode::Gt, false) => Cmp::Le(floor_f32(t)),
        (NodeMode::Lt, true) | (NodeMode::Gte, false) => Cmp::Lt(ceil_f32(t)),
        (NodeMode::Gte, true) | (NodeMode::Lt, false) => Cmp::Ge(ceil_f32(t)),
        (NodeMode::Gt, true) | (NodeMode::Leq, false) => Cmp::Gt(floor_f32(t)),
        (NodeMode::Eq | NodeMode::Neq, _) => return None,
    };
    match cmp {
        Cmp::Le(c) if c != f32::INFINITY => Some((false, next_up(c))),
        Cmp::Lt(c) => Some((false, c)),
        Cmp::Ge(c) if c != f32::NEG_INFINITY => Some((true, next_up(-c))),
        Cmp::Gt(c) => Some((true, -c)),
        _ => None,
    }
}

impl FastForest {
    pub(crate) fn compile(e: &TreeEnsemble) -> Option<FastForest> {
        if !matches!(e.aggregate, Aggregate::Sum | Aggregate::Average) {
            return None;
        }
        let mut f = FastForest {
            nodes: Vec::new(),
            leaf_at: Vec::new(),
            trees: Vec::with_capacity(e.trees.len()),
            cols: Vec::new(),
            values_f32: Vec::new(),
            values_f64: Vec::new(),
            single_column: true,
            min_features: e.min_features,
            wide: None,
        };
        for tree in &e.trees {
            if tree.depth > 64 {
                return None;
            }
            // The columns of the first leaf; every other leaf must write the same ones, in order.
            let first_leaf = tree
                .nodes
                .iter()
                .position(|n| matches!(n.kind, NodeKind::Leaf { .. }))?;
            let tcols: Vec<u32> = tree
                .leaf_weights(first_leaf)
                .iter()
                .map(|w| w.column)
                .collect();
            let mut sorted = tcols.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != tcols.len() {
                return None;
            }
            let c0 = f.cols.len() as u32;
            f.cols.extend(&tcols);
            let c1 = f.cols.len() as u32;
            f.single_column &= tcols.len() == 1;

            let root = f.nodes.len() as u32;
            f.nodes.push(FNode {
                fx: 0,
                t: f32::NAN,
                child: root,
            });
            f.leaf_at.push(0);
            // (canonical node, slot already reserved for it)
            let mut stack = vec![(0usize, root as usize)];
            while let Some((i, slot)) = stack.pop() {
                match &tree.nodes[i].kind {
                    NodeKind::Leaf { .. } => {
                        let ws = tree.leaf_weights(i);
                        if ws.len() != tcols.len()
                            || ws.iter().zip(&tcols).any(|(w, &c)| w.column != c)
                        {
                            return None;
                        }
                        f.leaf_at[slot] = f.values_f32.len() as u32;
                        for w in ws {
                            f.values_f32.push(w.value as f32);
                            f.values_f64.push(w.value);
                        }
                        f.nodes[slot] = FNode {
                            fx: 0,
                            t: f32::NAN,
                            child: slot as u32,
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
                        // NaN goes to the true child iff missing_tracks_true (NEQ is not compiled).
                        let (first, second, cond_is_true) = if *missing_true {
                            (*true_child, *false_child, false)
                        } else {
                            (*false_child, *true_child, true)
                        };
                        let (negate, t) = normalise(*mode, *threshold, cond_is_true)?;
                        let child = f.nodes.len() as u32;
                        for _ in 0..2 {
                            f.nodes.push(FNode {
                                fx: 0,
                                t: f32::NAN,
                                child: 0,
                            });
                            f.leaf_at.push(0);
                        }
                        f.nodes[slot] = FNode {
                            fx: feature | if negate { SIGN } else { 0 },
                            t,
                            child,
                        };
                        stack.push((first as usize, child as usize));
                        stack.push((second as usize, child as usize + 1));
                    }
                }
            }
            f.trees.push(FTree {
                root,
                depth: tree.depth,
                c0,
                c1,
            });
        }
        if f.nodes.len() >= (u32::MAX >> 1) as usize {
            return None;
        }
        if f.single_column && !e.double_precision {
            f.wide = f.widened(e.n_columns);
        }
        Some(f)
    }

    fn widened(&self, n_columns: usize) -> Option<WideForest> {
        let node = |i: usize| {
            let n = self.nodes[i];
            (n.fx, n.t, n.child)
        };
        let leaf = |i: usize| self.values_f32[self.leaf_at[i] as usize];
        let trees = self.trees.iter().map(|t| Source {
            node: &node,
            leaf: &leaf,
            root: t.root as usize,
            depth: t.depth,
            column: self.cols[t.c0 as usize] as usize,
        });
        WideForest::compile(trees, n_columns, self.min_features)
    }

    /// Walks `L` (start node, row offset) pairs `depth` steps; returns the final nodes.
    #[inline(always)]
    fn walk<const L: usize>(
        &self,
        rows: &[f32],
        mut idx: [u32; L],
        base: [usize; L],
        depth: u32,
    ) -> [u32; L] {
        let nodes = &self.nodes[..];
        for _ in 0..depth {
            for l in 0..L {
                let nd = nodes[idx[l] as usize];
                let x = rows[base[l] + (nd.fx & FEATURE) as usize];
                let xs = f32::from_bits(x.to_bits() ^ (nd.fx & SIGN));
                idx[l] = nd.child + u32::from(xs < nd.t);
            }
        }
        idx
    }

    /// Sums leaf values per row into `out` (n x n_columns, overwritten).
    pub(crate) fn accumulate(
        &self,
        rows: &[f32],
        n: usize,
        n_features: usize,
        n_columns: usize,
        double: bool,
        out: &mut [f64],
    ) {
        debug_assert!(n_features >= self.min_features);
        if let (false, Some(wide), true) = (double, &self.wide, n >= WIDE_MIN_ROWS) {
            return wide.accumulate(rows, n, n_features, out);
        }
        if double {
            self.accumulate_in(&self.values_f64, rows, n, n_features, n_columns, out)
        } else {
            self.accumulate_in(&self.values_f32, rows, n, n_features, n_columns, out)
        }
    }

    fn accumulate_in<W: Acc>(
        &self,
        values: &[W],
        rows: &[f32],
        n: usize,
        f: usize,
        n_columns: usize,
        out: &mut [f64],
    ) {
        let mut acc = vec![W::default(); CHUNK.min(n.max(1)) * n_columns];
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            acc.iter_mut().for_each(|a| *a = W::default());
            let chunk_rows = &rows[start * f..(start + len) * f];
            if len >= LANES {
                self.rows_interleaved(values, chunk_rows, len, f, n_columns, &mut acc);
            } else {
                for r in 0..len {
                    self.trees_interleaved(values, chunk_rows, r, f, n_columns, &mut acc);
                }
            }
            for (o, a) in out[start * n_columns..(start + len) * n_columns]
                .iter_mut()
                .zip(&acc)
            {
                *o = a.to_f64();
            }
            start += len;
        }
    }

    #[inline(always)]
    fn add_leaf<W: Acc>(&self, values: &[W], tree: &FTree, node: u32, acc_row: &mut [W]) {
        let at = self.leaf_at[node as usize] as usize;
        if self.single_column {
            acc_row[self.cols[tree.c0 as usize] as usize] += values[at];
        } else {
            let cols = &self.cols[tree.c0 as usize..tree.c1 as usize];
            for (k, &c) in cols.iter().enumerate() {
                acc_row[c as usize] += values[at + k];
            }
        }
    }

    /// Many rows: one tree at a time over the chunk, 8 rows per interleaved walk.
    fn rows_interleaved<W: Acc>(
        &self,
        values: &[W],
        rows: &[f32],
        len: usize,
        f: usize,
        nc: usize,
        acc: &mut [W],
    ) {
        for tree in &self.trees {
            let mut r = 0;
            while r < len {
                let valid = LANES.min(len - r);
                // Short blocks repeat their last row; the extra lanes are not added.
                let base: [usize; LANES] = std::array::from_fn(|l| (r + l.min(valid - 1)) * f);
                let end = self.walk(rows, [tree.root; LANES], base, tree.depth);
                for (l, &node) in end.iter().enumerate().take(valid) {
                    let row = r + l;
                    self.add_leaf(values, tree, node, &mut acc[row * nc..(row + 1) * nc]);
                }
                r += LANES;
            }
        }
    }

    /// Few rows: 8 trees at a time for one row, leaves added in tree order.
    fn trees_interleaved<W: Acc>(
        &self,
        values: &[W],
        rows: &[f32],
        r: usize,
        f: usize,
        nc: usize,
        acc: &mut [W],
    ) {
        let acc_row = &mut acc[r * nc..(r + 1) * nc];
        for group in self.trees.chunks(LANES) {
            let valid = group.len();
            let start: [u32; LANES] = std::array::from_fn(|l| group[l.min(valid - 1)].root);
            let depth = group.iter().map(|t| t.depth).max().unwrap_or(0);
            let end = self.walk(rows, start, [r * f; LANES], depth);
            for (tree, &node) in group.iter().zip(&end) {
                self.add_leaf(values, tree, node, acc_row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mode: NodeMode, t: f64) {
        let xs = [
            f32::NEG_INFINITY,
            -1.0,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            f32::from_bits(1),
            0.1,
            0.5,
            1.0,
            1.0000001,
            3.4e38,
            f32::INFINITY,
        ];
        for want in [true, false] {
            let Some((neg, tt)) = normalise(mode, t, want) else {
                continue;
            };
            for &x in &xs {
                let orig = match mode {
                    NodeMode::Leq => f64::from(x) <= t,
                    NodeMode::Lt => f64::from(x) < t,
                    NodeMode::Gte => f64::from(x) >= t,
                    NodeMode::Gt => f64::from(x) > t,
                    _ => unreachable!(),
                };
                let xs = if neg { -x } else { x };
                assert_eq!(xs < tt, orig == want, "{mode:?} t={t} want={want} x={x}");
            }
        }
    }

    /// The AVX-512 walk over complete trees adds, row by row and in tree order, the same f32
    /// sums as the scalar walk: over depths up to the limit and past it (no wide form then; each
    /// depth up to 7 takes its own way to a level's nodes and leaves), one column and several (each tree writing one, as XGBoost's multiclass trees do), every
    /// comparison mode, NaN inputs, and row counts around the 32-row blocks.
    #[test]
    fn wide_walk_adds_the_same_sums_as_the_scalar_walk() {
        use super::super::tests::{random_forest, random_rows, Lcg};
        use super::super::wide::MAX_DEPTH;
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let mut rng = Lcg(23);
        let f = 7;
        for (depth, cols, trees) in [
            (0, 1, 3),
            (1, 1, 5),
            (3, 1, 20),
            (4, 2, 20),
            (5, 1, 30),
            (6, 1, 60),
            (7, 1, 20),
            (6, 3, 61),
            (10, 1, 12),
            (11, 1, 4),
        ] {
            let mut b = random_forest(
                &mut rng,
                trees,
                depth,
                f as i64,
                1,
                &["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"],
            );
            for (c, t) in b.w_col.iter_mut().zip(&b.w_tree) {
                *c = t % cols;
            }
            let e = TreeEnsemble::from_node(&b.regressor(cols, Vec::new())).unwrap();
            let fast = FastForest::compile(&e).expect("a forest the fast form takes");
            let nc = cols as usize;
            let deepest = e.trees.iter().map(|t| t.depth).max().unwrap();
            assert_eq!(deepest > MAX_DEPTH, depth > MAX_DEPTH, "deepest {deepest}");
            assert_eq!(
                fast.wide.is_some(),
                avx512 && deepest <= MAX_DEPTH,
                "depth {deepest}, AVX-512F {avx512}"
            );
            for n in [16usize, 31, 32, 33, 100] {
                let rows = random_rows(&mut rng, n, f);
                let mut got = vec![0.0f64; n * nc];
                fast.accumulate(&rows, n, f, nc, false, &mut got);
                let mut want = vec![0.0f64; n * nc];
                fast.accumulate_in(&fast.values_f32, &rows, n, f, nc, &mut want);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "depth {depth} cols {cols} n {n}");
            }
        }
    }

    #[test]
    fn normalised_comparisons_are_exact() {
        for mode in [NodeMode::Leq, NodeMode::Lt, NodeMode::Gte, NodeMode::Gt] {
            for t in [
                0.0,
                -0.0,
                0.5,
                0.1,
                1.0,
                0.1f32 as f64,
                1e-45,
                -1.0,
                3.5e38,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ] {
                check(mode, t);
            }
        }
    }
}
