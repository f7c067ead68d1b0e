//! The compiled forest with every tree padded to a complete binary tree, walked 32 rows at a time
//! in AVX-512 vectors.
//!
//! Node `i`'s children are `2i + 1` (the NaN side) and `2i + 2`, so a step needs no child
//! pointer: find the node's feature and threshold for 16 rows, read the 16 feature values,
//! compare, and `i = 2i + 1 + cond`. A leaf above the bottom level becomes nodes with threshold
//! NaN (always the first child) down to a copy of its value, so every walk is exactly `depth`
//! steps and lands on the right value. Two vectors of 16 rows walk each tree together so one's
//! gathers overlap the other's.
//!
//! A level of at most 32 nodes (the first six) fits in one or two registers, so its features
//! and thresholds are picked by a permute (`vpermd`/`vpermt2d`, a cycle or so) instead of two
//! gathers, and so are up to 64 leaves: a depth-6 tree takes one gather per level (the rows'
//! feature values) instead of three, and none for its leaves. The rows of a 32-row block are
//! first laid out by feature, so the first levels (at most [`LOADED`] nodes) read each node's
//! feature for all rows with plain loads instead of that gather, each lane keeping its node's.
//!
//! Built only for forests [`FastForest`](super::fast::FastForest) evaluates in f32 where every
//! tree writes one column and is at most [`MAX_DEPTH`] deep, and used only on CPUs with AVX-512F.
//! The comparisons are the fast form's (`s * x < T`), and each row's leaves are added in tree
//! order in f32, as the scalar walk adds them: the sums are bit-identical (tested against it).
//!
//! This is the crate's one module with `unsafe` code: the intrinsics, each gather's bounds
//! argued where it happens.
#![allow(unsafe_code)]

/// Deeper trees would pad to too many nodes (2^depth per tree).
pub(crate) const MAX_DEPTH: u32 = 10;
/// The padded forest's size limit in nodes.
const MAX_NODES: usize = 1 << 22;
const FEATURE: u32 = 0x7fff_ffff;
/// Levels of at most this many nodes read their rows' feature values with plain loads, one
/// pair per node, instead of a gather (whose 16 lanes are 16 loads).
const LOADED: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Tree {
    /// Offset of the tree's `2^depth - 1` nodes in `fx`/`t`.
    nodes: usize,
    /// Offset of its `2^depth` leaf values.
    leaves: usize,
    depth: u32,
    column: usize,
}

/// A tree in the fast form: `(fx, t, first child)` of each node (a leaf is its own child) and
/// the value of each leaf node.
pub(crate) struct Source<'a> {
    pub node: &'a dyn Fn(usize) -> (u32, f32, u32),
    pub leaf: &'a dyn Fn(usize) -> f32,
    pub root: usize,
    pub depth: u32,
    pub column: usize,
}

#[derive(Debug)]
pub(crate) struct WideForest {
    fx: Vec<u32>,
    t: Vec<f32>,
    leaves: Vec<f32>,
    trees: Vec<Tree>,
    n_columns: usize,
    min_features: usize,
}

impl WideForest {
    /// `None` when a tree is too deep, the padded forest too large, or the CPU lacks AVX-512F.
    pub(crate) fn compile<'a>(
        trees: impl Iterator<Item = Source<'a>>,
        n_columns: usize,
        min_features: usize,
    ) -> Option<WideForest> {
        if !avx512() {
            return None;
        }
        let mut w = WideForest {
            fx: Vec::new(),
            t: Vec::new(),
            leaves: Vec::new(),
            trees: Vec::new(),
            n_columns,
            min_features,
        };
        for src in trees {
            if src.depth > MAX_DEPTH || src.column >= n_columns {
                return None;
            }
            let internal = (1usize << src.depth) - 1;
            if w.fx.len() + internal > MAX_NODES {
                return None;
            }
            let tree = Tree {
                nodes: w.fx.len(),
                leaves: w.leaves.len(),
                depth: src.depth,
                column: src.column,
            };
            w.fx.resize(tree.nodes + internal, 0);
            w.t.resize(tree.nodes + internal, f32::NAN);
            w.leaves.resize(tree.leaves + internal + 1, 0.0);
            // (index in the complete tree, node in the fast form)
            let mut stack = vec![(0usize, src.root)];
            while let Some((i, node)) = stack.pop() {
                let (fx, t, child) = (src.node)(node);
                let is_leaf = child as usize == node;
                if i >= internal {
                    if !is_leaf {
                        return None; // deeper than `depth`: not the fast form's invariant
                    }
                    w.leaves[tree.leaves + i - internal] = (src.leaf)(node);
                    continue;
                }
                let (first, second) = if is_leaf {
                    (node, node)
                } else {
                    w.fx[tree.nodes + i] = fx;
                    w.t[tree.nodes + i] = t;
                    (child as usize, child as usize + 1)
                };
                stack.push((2 * i + 1, first));
                stack.push((2 * i + 2, second));
            }
            w.trees.push(tree);
        }
        Some(w)
    }

    /// Adds each tree's leaf for `n` rows of width `f` into `out` (n x n_columns, f32 sums
    /// widened to f64 at the end, overwritten). `n` must be at least 1.
    pub(crate) fn accumulate(&self, rows: &[f32], n: usize, f: usize, out: &mut [f64]) {
        assert!(n >= 1 && f >= self.min_features && rows.len() >= n * f);
        assert!(out.len() >= n * self.n_columns);
        assert!(
            f * 32 <= i32::MAX as usize,
            "gather offsets are 32-bit: far more features than any model has"
        );
        // SAFETY: `compile` returned a forest only after `avx512()` confirmed AVX-512F at run
        // time; the bounds `walk32` relies on are the asserts above (see its comment).
        unsafe { self.walk_all(rows, n, f, out) }
    }

    /// # Safety
    /// The CPU supports AVX-512F; `rows.len() >= n * f`, `f >= min_features`, `n >= 1`,
    /// `f * 32 <= i32::MAX`, `out.len() >= n * n_columns`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn walk_all(&self, rows: &[f32], n: usize, f: usize, out: &mut [f64]) {
        use std::arch::x86_64::*;
        const L: usize = 16;
        let nc = self.n_columns;
        let fmask = _mm512_set1_epi32(FEATURE as i32);
        let smask = _mm512_set1_epi32(i32::MIN);
        let one = _mm512_set1_epi32(1);
        let mut acc = vec![[0.0f32; 2 * L]; nc];
        const BLOCK: usize = 2 * L;
        const { assert!(BLOCK == 1 << 5, "feature offsets are `fx << 5`") };
        // The block's rows by feature: feature k of lane l at `k * BLOCK + l`.
        let mut cols = vec![0.0f32; f * BLOCK];
        let lanes0 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lanes1 = _mm512_add_epi32(lanes0, _mm512_set1_epi32(L as i32));
        let mut r = 0;
        while r < n {
            // Lanes past the last row repeat it; their sums are not written.
            for l in 0..BLOCK {
                let row = &rows[(r + l).min(n - 1) * f..][..f];
                for (k, &x) in row.iter().enumerate() {
                    cols[k * BLOCK + l] = x;
                }
            }
            acc.iter_mut().for_each(|a| *a = [0.0; 2 * L]);
            for tree in &self.trees {
                // SAFETY (every load and gather below): at level s every lane's position j is
                // below 2^s, so node offsets `2^s - 1 + j` stay below `2^(s+1) - 1 <= 2^depth - 1`
                // and the unmasked loads of a level (`2^s - 1 .. 2^(s+1) - 1`) stay within the
                // tree's nodes `fx[nodes..nodes + 2^depth - 1]` (masked loads do not touch the
                // lanes they mask off); feature values are read at `(fx & FEATURE) * BLOCK +
                // lane` with lane < BLOCK and every fx < min_features <= f, so below
                // f * BLOCK = cols.len() (the plain loads read lanes 0..16 or 16..32 of one
                // feature); leaf offsets j are in [0, 2^depth), the tree's leaves, and the leaf
                // loads read exactly its 2^depth leaves (16 or fewer masked). All offsets fit
                // i32 (asserted by the caller).
                let fxp = self.fx.as_ptr().add(tree.nodes).cast::<i32>();
                let tp = self.t.as_ptr().add(tree.nodes);
                let xp = cols.as_ptr().cast::<i32>();
                // Each lane's position within the current level (node `2^level - 1 + j`).
                let mut j0 = _mm512_setzero_si512();
                let mut j1 = _mm512_setzero_si512();
                for level in 0..tree.depth {
                    let start = (1usize << level) - 1;
                    let width = 1usize << level;
                    // The level's features and thresholds for each lane: picked from one or two
                    // registers holding the whole level while it has at most 32 nodes, gathered
                    // below that. Loads stay within the level: `start + width <= 2^depth - 1`.
                    let (fx0, fx1, t0, t1) = if width <= L {
                        let m = ((1u32 << width) - 1) as __mmask16;
                        let f = _mm512_maskz_loadu_epi32(m, fxp.add(start));
                        let t = _mm512_maskz_loadu_ps(m, tp.add(start));
                        (
                            _mm512_permutexvar_epi32(j0, f),
                            _mm512_permutexvar_epi32(j1, f),
                            _mm512_permutexvar_ps(j0, t),
                            _mm512_permutexvar_ps(j1, t),
                        )
                    } else if width == 2 * L {
                        let (fa, fb) = (
                            _mm512_loadu_si512(fxp.add(start).cast()),
                            _mm512_loadu_si512(fxp.add(start + L).cast()),
                        );
                        let (ta, tb) = (
                            _mm512_loadu_ps(tp.add(start)),
                            _mm512_loadu_ps(tp.add(start + L)),
                        );
                        (
                            _mm512_permutex2var_epi32(fa, j0, fb),
                            _mm512_permutex2var_epi32(fa, j1, fb),
                            _mm512_permutex2var_ps(ta, j0, tb),
                            _mm512_permutex2var_ps(ta, j1, tb),
                        )
                    } else {
                        let (fl, tl) = (fxp.add(start), tp.add(start));
                        (
                            _mm512_i32gather_epi32::<4>(j0, fl),
                            _mm512_i32gather_epi32::<4>(j1, fl),
                            _mm512_i32gather_ps::<4>(j0, tl),
                            _mm512_i32gather_ps::<4>(j1, tl),
                        )
                    };
                    let (x0, x1) = if width <= LOADED {
                        // A level of a few nodes: each node's feature over the block is two
                        // plain loads, and each lane keeps the one at its position.
                        let col = |k: usize| {
                            let fx = *fxp.add(start + k) as u32 & FEATURE;
                            xp.add(fx as usize * BLOCK)
                        };
                        let mut x0 = _mm512_loadu_si512(col(0).cast());
                        let mut x1 = _mm512_loadu_si512(col(0).add(L).cast());
                        for k in 1..width {
                            let (c, at) = (col(k), _mm512_set1_epi32(k as i32));
                            let m0 = _mm512_cmpeq_epi32_mask(j0, at);
                            let m1 = _mm512_cmpeq_epi32_mask(j1, at);
                            x0 = _mm512_mask_loadu_epi32(x0, m0, c.cast());
                            x1 = _mm512_mask_loadu_epi32(x1, m1, c.add(L).cast());
                        }
                        (x0, x1)
                    } else {
                        let at = |fx: __m512i, lanes: __m512i| {
                            _mm512_add_epi32(
                                lanes,
                                _mm512_slli_epi32::<5>(_mm512_and_si512(fx, fmask)),
                            )
                        };
                        (
                            _mm512_i32gather_epi32::<4>(at(fx0, lanes0), xp),
                            _mm512_i32gather_epi32::<4>(at(fx1, lanes1), xp),
                        )
                    };
                    // s * x: flip the sign bit where the node's is set.
                    let s0 =
                        _mm512_castsi512_ps(_mm512_xor_si512(x0, _mm512_and_si512(fx0, smask)));
                    let s1 =
                        _mm512_castsi512_ps(_mm512_xor_si512(x1, _mm512_and_si512(fx1, smask)));
                    let c0 = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s0, t0);
                    let c1 = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s1, t1);
                    let n0 = _mm512_add_epi32(j0, j0);
                    let n1 = _mm512_add_epi32(j1, j1);
                    j0 = _mm512_mask_add_epi32(n0, c0, n0, one);
                    j1 = _mm512_mask_add_epi32(n1, c1, n1, one);
                }
                // The leaves, `2^depth` of them, picked from registers up to 64.
                let lp = self.leaves.as_ptr().add(tree.leaves);
                let width = 1usize << tree.depth;
                let (v0, v1) = if width <= L {
                    let m = ((1u32 << width) - 1) as __mmask16;
                    let l = _mm512_maskz_loadu_ps(m, lp);
                    (_mm512_permutexvar_ps(j0, l), _mm512_permutexvar_ps(j1, l))
                } else if width <= 4 * L {
                    // 32 or 64 leaves: bit 5 of the position picks the upper pair of registers.
                    let (la, lb) = (_mm512_loadu_ps(lp), _mm512_loadu_ps(lp.add(L)));
                    let pick = |j: __m512i| {
                        let low = _mm512_permutex2var_ps(la, j, lb);
                        if width == 2 * L {
                            return low;
                        }
                        let high = _mm512_permutex2var_ps(
                            _mm512_loadu_ps(lp.add(2 * L)),
                            j,
                            _mm512_loadu_ps(lp.add(3 * L)),
                        );
                        let upper = _mm512_test_epi32_mask(j, _mm512_set1_epi32(2 * L as i32));
                        _mm512_mask_blend_ps(upper, low, high)
                    };
                    (pick(j0), pick(j1))
                } else {
                    (
                        _mm512_i32gather_ps::<4>(j0, lp),
                        _mm512_i32gather_ps::<4>(j1, lp),
                    )
                };
                let a = &mut acc[tree.column];
                let a0 = _mm512_add_ps(_mm512_loadu_ps(a.as_ptr()), v0);
                let a1 = _mm512_add_ps(_mm512_loadu_ps(a[L..].as_ptr()), v1);
                _mm512_storeu_ps(a.as_mut_ptr(), a0);
                _mm512_storeu_ps(a[L..].as_mut_ptr(), a1);
            }
            for l in 0..(2 * L).min(n - r) {
                for (c, a) in acc.iter().enumerate() {
                    out[(r + l) * nc + c] = f64::from(a[l]);
                }
            }
            r += 2 * L;
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn walk_all(&self, _: &[f32], _: usize, _: usize, _: &mut [f64]) {
        unreachable!("compiled only where AVX-512F is detected")
    }
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
