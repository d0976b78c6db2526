//! Block-sparse rows (BSR): non-zero `BR x BC` blocks of a matrix, stored contiguously with one
//! column index per block, and its product `y[b, r] += W[r, :] · x[b, :]`.
//!
//! One index per block instead of one per value, and contiguous x loads instead of gathers: a
//! win when the sparsity has block structure (block pruning), a loss when unstructured sparsity
//! forces explicit zeros into the blocks — the plan measures both on the actual matrix and keeps
//! the faster. The block shapes offered are the ones `symbiont bench` compares (docs/benchmarks.md).

use super::csr::Indices;
use super::{Lines, Operands, ALIGN};
use crate::isa::Isa;
use crate::simd::{self, Kernel, Simd};
use std::cell::RefCell;
use std::ops::Range;

/// Block shapes with a compiled kernel, as (rows, cols).
pub const BLOCK_SHAPES: [(usize, usize); 6] = [(1, 8), (1, 16), (2, 8), (4, 4), (4, 1), (8, 1)];

/// A `[rows, cols]` matrix as block-sparse rows.
#[derive(Clone, Debug)]
pub struct Bsr {
    pub rows: usize,
    pub cols: usize,
    pub br: usize,
    pub bc: usize,
    /// Start of each block row's blocks; `ceil(rows / br) + 1` entries.
    pub block_ptr: Vec<u32>,
    /// First column of each block divided by `bc`.
    pub block_col: Indices,
    /// `br x bc` values per block, row-major inside the block (padding rows/cols are zero).
    /// Line-aligned, so a 4 x 4 block is one cache line.
    pub vals: Lines<f32>,
}

impl Bsr {
    /// Keeps every block of a row-major dense matrix that has a non-zero value.
    pub fn from_dense(w: &[f32], rows: usize, cols: usize, br: usize, bc: usize) -> Bsr {
        assert_eq!(w.len(), rows * cols);
        assert!(
            BLOCK_SHAPES.contains(&(br, bc)),
            "no kernel for {br}x{bc} blocks"
        );
        let (nbr, nbc) = (rows.div_ceil(br), cols.div_ceil(bc));
        let mut block_ptr = vec![0u32];
        let mut idx = Vec::new();
        let mut vals = Lines::new(ALIGN);
        let at = |r: usize, c: usize| {
            if r < rows && c < cols {
                w[r * cols + c]
            } else {
                0.0
            }
        };
        for i in 0..nbr {
            for j in 0..nbc {
                let any = (0..br).any(|a| (0..bc).any(|b| at(i * br + a, j * bc + b) != 0.0));
                if any {
                    idx.push(j as u32);
                    for a in 0..br {
                        for b in 0..bc {
                            vals.push(at(i * br + a, j * bc + b));
                        }
                    }
                }
            }
            block_ptr.push(idx.len() as u32);
        }
        let block_col = if nbc <= 1 << 16 {
            Indices::U16(idx.iter().map(|&c| c as u16).collect())
        } else {
            Indices::U32(idx)
        };
        Bsr {
            rows,
            cols,
            br,
            bc,
            block_ptr,
            block_col,
            vals,
        }
    }

    pub fn blocks(&self) -> usize {
        self.block_col.len()
    }

    /// Bytes read by one product: values (explicit zeros included), indices, block pointers.
    pub fn bytes(&self) -> usize {
        self.vals.len() * 4
            + self.block_col.len() * self.block_col.bytes_per_index()
            + self.block_ptr.len() * 4
    }

    /// Adds `W[r, :] · x[b, :]` to `y[b * ldy + r]` for `r` in `rows`, `b < nb`. `rows` must
    /// start and end on block-row boundaries (or at `self.rows`).
    ///
    /// # Safety
    /// As `dense_acc`: `y` valid for the touched elements, no concurrent access to them.
    pub(crate) unsafe fn acc(&self, level: Isa, o: Operands<'_>, rows: Range<usize>) {
        assert!(
            rows.start.is_multiple_of(self.br)
                && (rows.end.is_multiple_of(self.br) || rows.end == self.rows)
        );
        if matches!((self.br, self.bc), (4, 4) | (1, 16)) {
            // SAFETY: forwarded contract.
            let done = unsafe {
                match &self.block_col {
                    Indices::U16(ci) => simd::run(level, Blocks16::new(self, ci, o, &rows)).is_ok(),
                    Indices::U32(ci) => simd::run(level, Blocks16::new(self, ci, o, &rows)).is_ok(),
                }
            };
            if done {
                return;
            }
        }
        // SAFETY: forwarded contract.
        unsafe {
            match (self.br, self.bc) {
                (1, 8) => self.acc_shape::<1, 8>(o, rows),
                (1, 16) => self.acc_shape::<1, 16>(o, rows),
                (2, 8) => self.acc_shape::<2, 8>(o, rows),
                (4, 4) => self.acc_shape::<4, 4>(o, rows),
                (4, 1) => self.acc_shape::<4, 1>(o, rows),
                (8, 1) => self.acc_shape::<8, 1>(o, rows),
                (br, bc) => unreachable!("no kernel for {br}x{bc} blocks (rejected in from_dense)"),
            }
        }
    }

    unsafe fn acc_shape<const BR: usize, const BC: usize>(
        &self,
        o: Operands<'_>,
        rows: Range<usize>,
    ) {
        let Operands { x, ldx, nb, y, ldy } = o;
        thread_local! {
            static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
        }
        let k = self.cols;
        let kp = k.div_ceil(BC) * BC;
        PADDED.with(|p| {
            let mut padded = p.borrow_mut();
            for b in 0..nb {
                let xb = padded_row(x, b * ldx, k, kp, &mut padded);
                for i in rows.start / BR..rows.end.div_ceil(BR) {
                    let (s, e) = (self.block_ptr[i] as usize, self.block_ptr[i + 1] as usize);
                    let mut acc = [[0f32; BC]; BR];
                    let vals = &self.vals[s * BR * BC..e * BR * BC];
                    match &self.block_col {
                        Indices::U16(ci) => block_row::<u16, BR, BC>(vals, &ci[s..e], xb, &mut acc),
                        Indices::U32(ci) => block_row::<u32, BR, BC>(vals, &ci[s..e], xb, &mut acc),
                    }
                    for (a, lanes) in acc.iter().enumerate() {
                        let r = i * BR + a;
                        if r < self.rows {
                            // SAFETY: caller contract.
                            unsafe { *y.add(b * ldy + r) += lanes.iter().sum::<f32>() };
                        }
                    }
                }
            }
        });
    }
}

/// Row `x[start .. start + k]`, as is when `kp == k`, else copied into `buf` and zero-padded to
/// `kp`: blocks of the last column may reach past K.
fn padded_row<'a>(
    x: &'a [f32],
    start: usize,
    k: usize,
    kp: usize,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    if kp == k {
        &x[start..start + k]
    } else {
        buf.clear();
        buf.extend_from_slice(&x[start..start + k]);
        buf.resize(kp, 0.0);
        buf
    }
}

#[inline(always)]
fn block_row<I: Copy + Into<u32>, const BR: usize, const BC: usize>(
    vals: &[f32],
    cols: &[I],
    x: &[f32],
    acc: &mut [[f32; BC]; BR],
) {
    for (blk, &c) in vals.chunks_exact(BR * BC).zip(cols) {
        let c0 = c.into() as usize * BC;
        let xs: &[f32; BC] = x[c0..c0 + BC].try_into().expect("block inside padded x");
        for a in 0..BR {
            for b in 0..BC {
                acc[a][b] = blk[a * BC + b].mul_add(xs[b], acc[a][b]);
            }
        }
    }
}

/// The 4x4 and 1x16 blocks, written once over the lane width: a block's 16 values are
/// 16 / LANES vectors; x is read with contiguous loads (1x16) or one 4-value load repeated across
/// the lanes (4x4, where lane l of a block row belongs to row l / 4 at 16 lanes).
struct Blocks16<'a, I> {
    m: &'a Bsr,
    cols: &'a [I],
    o: Operands<'a>,
    rows: Range<usize>,
}

impl<'a, I> Blocks16<'a, I> {
    fn new(m: &'a Bsr, cols: &'a [I], o: Operands<'a>, rows: &Range<usize>) -> Self {
        let rows = rows.clone();
        Blocks16 { m, cols, o, rows }
    }
}

/// Most vectors a 16-value block spans (4 at NEON's 4 lanes).
const MAX_VECS: usize = 4;

impl<I: Copy + Into<u32>> Kernel for Blocks16<'_, I> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let Blocks16 { m, cols, o, rows } = self;
        let Operands { x, ldx, nb, y, ldy } = o;
        let vecs = 16 / S::LANES;
        let k = m.cols;
        let kp = k.div_ceil(m.bc) * m.bc;
        let mut padded = Vec::new();
        for b in 0..nb {
            let xb = padded_row(x, b * ldx, k, kp, &mut padded);
            let xp = xb.as_ptr();
            for i in rows.start / m.br..rows.end.div_ceil(m.br) {
                let (s, e) = (m.block_ptr[i] as usize, m.block_ptr[i + 1] as usize);
                let vp = m.vals.as_ptr();
                // SAFETY (block): block s..e has 16 values at vals[16 * blk]; its columns
                // c * bc .. c * bc + bc are inside the padded x.
                unsafe {
                    // Two accumulator sets, alternate blocks: halves the FMA latency chain.
                    let mut acc = [[S::zero(); MAX_VECS]; 2];
                    for blk in s..e {
                        let c0 = cols[blk].into() as usize * m.bc;
                        let set = &mut acc[blk & 1];
                        for (v, a) in set.iter_mut().enumerate().take(vecs) {
                            let wv = S::load(vp.add(blk * 16 + v * S::LANES));
                            let xv = if m.br == 4 {
                                S::broadcast4(xp.add(c0))
                            } else {
                                S::load(xp.add(c0 + v * S::LANES))
                            };
                            *a = S::fma(wv, xv, *a);
                        }
                    }
                    let mut lanes = [0f32; 16];
                    let [even, odd] = acc;
                    for (v, (e, o)) in even.iter().zip(&odd).enumerate().take(vecs) {
                        S::store(lanes.as_mut_ptr().add(v * S::LANES), S::add(*e, *o));
                    }
                    if m.br == 4 {
                        // Values 4a..4a+4 belong to row a of the block.
                        for a in 0..4 {
                            let r = i * 4 + a;
                            if r < m.rows {
                                let q = &lanes[4 * a..4 * a + 4];
                                *y.add(b * ldy + r) += q[0] + q[1] + q[2] + q[3];
                            }
                        }
                    } else {
                        *y.add(b * ldy + i) += lanes.iter().sum::<f32>();
                    }
                }
            }
        }
    }
}
