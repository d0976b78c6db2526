//! A cell's weight matrix split by gate (four `[rows, cols]` blocks, gate order i, f, g, o), each
//! packed in the format that runs fastest for it.
//!
//! Splitting by gate lets threads own a range of hidden units across all four gates (so each
//! thread can finish its units' gate epilogue without waiting for the others), and keeps block
//! rows of BSR inside one gate whatever H is.

use crate::plan::{Dtype, PlanOptions};
use crate::InferError;
use kernels::packed::{Format, PackedMatrix, BLOCK_SHAPES};
use kernels::rng::CounterRng;
use std::ops::Range;
use std::time::Instant;

/// Which storage format the plan uses for each weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatChoice {
    /// Time the candidates on each matrix and keep the fastest: the dense format of the dtype,
    /// plus CSR and every BSR block shape when at least half of the matrix is zero.
    Auto,
    /// Use this format for every matrix.
    Fixed(Format),
}

impl std::str::FromStr for FormatChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<FormatChoice, String> {
        if s == "auto" {
            Ok(FormatChoice::Auto)
        } else {
            s.parse::<Format>()
                .map(FormatChoice::Fixed)
                .map_err(|e| format!("{e}, or auto"))
        }
    }
}

/// At least half of the values are zero: where sparse formats become candidates.
pub(crate) fn mostly_zero(w: &[f32]) -> bool {
    w.iter().filter(|v| **v == 0.0).count() * 2 >= w.len()
}

impl FormatChoice {
    /// What a caller that did not choose should use for `layers`: dense when every recurrent
    /// matrix is dense, else `Auto` (each matrix timed in the candidate formats).
    pub fn default_for(layers: &[crate::LayerWeights]) -> FormatChoice {
        let sparse = layers.iter().flat_map(|l| &l.directions).any(|d| match d {
            crate::CellWeights::Lstm { w_hh, .. } => mostly_zero(w_hh),
            crate::CellWeights::Hlstm { w_hh1, .. } => mostly_zero(w_hh1),
        });
        if sparse {
            FormatChoice::Auto
        } else {
            FormatChoice::Fixed(Format::Dense)
        }
    }
}

/// Four gate blocks of one weight matrix.
pub(crate) struct GateMatrix {
    pub gates: Vec<PackedMatrix>,
    pub rows: usize,
    pub cols: usize,
}

/// What to measure the candidates on: the batch width the matrix will see.
pub(crate) struct Tuning {
    pub dense: Format,
    pub choice: FormatChoice,
    pub nb: usize,
}

impl Tuning {
    /// How a plan built with `opts` packs a matrix that sees `nb` rows per product: the dense
    /// format follows the dtype (a fixed `dense` becomes `bf16` in a bf16 plan).
    pub fn for_plan(opts: &PlanOptions, nb: usize) -> Tuning {
        let dense = match opts.dtype {
            Dtype::F32 => Format::Dense,
            Dtype::Bf16 => Format::Bf16,
        };
        let choice = match opts.format {
            FormatChoice::Fixed(Format::Dense) => FormatChoice::Fixed(dense),
            f => f,
        };
        Tuning { dense, choice, nb }
    }
}

impl GateMatrix {
    /// Packs `w` (4·rows, cols), gate-major.
    pub fn pack(
        w: &[f32],
        rows: usize,
        cols: usize,
        tuning: &Tuning,
    ) -> Result<GateMatrix, InferError> {
        if w.len() != 4 * rows * cols {
            return Err(InferError::Config(format!(
                "weight of {} values is not 4 x {rows} x {cols}",
                w.len()
            )));
        }
        let gates = (0..4)
            .map(|k| {
                pack_one(
                    &w[k * rows * cols..(k + 1) * rows * cols],
                    rows,
                    cols,
                    tuning,
                )
            })
            .collect();
        Ok(GateMatrix { gates, rows, cols })
    }

    /// `y[b * ldy + k * rows + r] += W_k[r, :] · x[b * ldx ..]` for every gate k, `r` in `units`.
    ///
    /// # Safety
    /// `y` valid for those elements and not accessed by other threads meanwhile.
    pub unsafe fn acc_units(
        &self,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: *mut f32,
        ldy: usize,
        units: Range<usize>,
    ) {
        for (k, g) in self.gates.iter().enumerate() {
            // SAFETY: forwarded; gate k's rows sit at offset k * rows of each y row.
            unsafe { g.acc_raw(x, ldx, nb, y.add(k * self.rows), ldy, units.clone()) };
        }
    }

    /// The rows of all four gate blocks cut into `parts` lists of `(gate, rows)` pieces with
    /// nearly equal row counts, every cut at a multiple of `align` rows within a gate. For the
    /// hoisted input projection, where nothing ties a thread to a unit range: splitting units
    /// instead gave one thread 4 of the 7 32-row panels of each gate at H = 200 (units 96..200)
    /// and the other 3.
    pub fn balanced_pieces(&self, parts: usize, align: usize) -> Vec<Vec<(usize, Range<usize>)>> {
        let align = align.max(1);
        let parts = parts.max(1);
        let total = 4 * self.rows;
        let mut out: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); parts];
        let mut done = 0;
        for k in 0..4 {
            let mut r = 0;
            while r < self.rows {
                let end = (r + align).min(self.rows);
                // The part whose share of the rows this piece's middle falls in.
                let mid = done + (end - r) / 2;
                let p = (mid * parts / total.max(1)).min(parts - 1);
                match out[p].last_mut() {
                    Some((g, range)) if *g == k && range.end == r => range.end = end,
                    _ => out[p].push((k, r..end)),
                }
                done += end - r;
                r = end;
            }
        }
        out.retain(|pieces| !pieces.is_empty());
        if out.is_empty() {
            // No rows: one part with nothing to do (a team runs at least one part).
            out.push(Vec::new());
        }
        out
    }

    /// `y[b * ldy + c] = bias[c] + W_k[r, :] · x[b * ldx ..]` for the rows of `(gate, rows)`
    /// pieces (see `balanced_pieces`), column c = k · rows + r, `b < nb`; columns past
    /// `bias.len()` (padding) start from 0. Each thread starts its own columns from the bias
    /// instead of a serial fill of the whole buffer first: whole LM, H = 200, V = 10 000, batch 1,
    /// 4 alternations of `symbiont bench --layers 2 --hidden 200 --vocab 10000 --batch 1 --seq 35
    /// --threads 2 --step-threads 2`: 1.76–2.17 ms with the serial fill, 1.76–2.01 ms without.
    ///
    /// # Safety
    /// As `acc_units`, for the columns of the pieces.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn set_pieces(
        &self,
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: *mut f32,
        ldy: usize,
        pieces: &[(usize, Range<usize>)],
    ) {
        for (k, rows) in pieces {
            let cols = k * self.rows + rows.start..k * self.rows + rows.end;
            let real = cols.start.min(bias.len())..cols.end.min(bias.len());
            for row in 0..nb {
                // SAFETY: forwarded; these columns of every row are the caller's to write.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(y.add(row * ldy + cols.start), cols.len())
                };
                let (head, pad) = dst.split_at_mut(real.len());
                head.copy_from_slice(&bias[real.clone()]);
                pad.fill(0.0);
            }
            // SAFETY: forwarded; gate k's rows sit at offset k * rows of each y row.
            unsafe { self.gates[*k].acc_raw(x, ldx, nb, y.add(k * self.rows), ldy, rows.clone()) };
        }
    }

    /// Like `acc_units` but gate k reads its own input block `x[b * ldx + k * xstride ..]` (the
    /// second layer of an H-LSTM gate reads that gate's hidden layer).
    ///
    /// # Safety
    /// As `acc_units`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn acc_units_per_gate(
        &self,
        x: &[f32],
        ldx: usize,
        xstride: usize,
        nb: usize,
        y: *mut f32,
        ldy: usize,
        units: Range<usize>,
    ) {
        for (k, g) in self.gates.iter().enumerate() {
            // SAFETY: forwarded.
            unsafe {
                g.acc_raw(
                    &x[k * xstride..],
                    ldx,
                    nb,
                    y.add(k * self.rows),
                    ldy,
                    units.clone(),
                )
            };
        }
    }

    pub fn bytes(&self) -> usize {
        self.gates.iter().map(|g| g.bytes()).sum()
    }

    pub fn nnz(&self) -> usize {
        self.gates.iter().map(|g| g.nnz()).sum()
    }

    /// Row granularity of unit ranges passed to `acc_units` (the largest of the four blocks').
    pub fn row_align(&self) -> usize {
        self.gates.iter().map(|g| g.row_align()).max().unwrap_or(1)
    }

    /// The formats of the four gate blocks, e.g. `csr` or `csr,csr,bsr4x4,csr`.
    pub fn formats(&self) -> String {
        let f: Vec<String> = self.gates.iter().map(|g| g.format().to_string()).collect();
        if f.iter().all(|x| *x == f[0]) {
            f[0].clone()
        } else {
            f.join(",")
        }
    }
}

/// Rows from which f32 products use the row-major layout (and through it the `gemm` crate).
const CRATE_GEMM_ROWS: usize = 256;

/// The dense layout for a batch width: row-major dot products up to 7 batch rows, 32-row panels
/// (x broadcast, no reductions; 1.6–2x faster at 16 and 35 rows, docs/inference.md) from 8; for
/// bf16 plans on CPUs with AMX-BF16, AMX tiles from 8 (2.5–4x the bf16 panels at 16 and 35 rows;
/// x rounded to bf16 too, docs/inference.md).
///
/// f32 products over ≥ 256 rows (the hoisted projection and the decoder of batch-16 runs: 560
/// rows) stay row-major, where the kernel hands them to the `gemm` crate's packed GEMM. One gate
/// block, one thread (`kernel_rates -- H`, two runs), 560 rows, row-major vs panels: 88–98 vs
/// 87–91 GFLOP/s at H = 200, 103–106 vs 84–87 at H = 650, 100–137 vs 93–98 at H = 1500; at 140
/// rows the panels still win at H = 200 (103 vs 95).
fn dense_layout(dense: Format, nb: usize) -> Format {
    match (dense, nb >= 8) {
        (Format::Dense, true) if nb >= CRATE_GEMM_ROWS => Format::Dense,
        (Format::Dense, true) => Format::Panel,
        (Format::Bf16, true) if kernels::packed::amx_available() => Format::Bf16Amx,
        (Format::Bf16, true) => Format::Bf16Panel,
        (f, _) => f,
    }
}

/// CSR follows the dtype: bf16 plans store CSR values in bf16 too.
fn csr_for(dense: Format) -> Format {
    if dense == Format::Bf16 {
        Format::CsrBf16
    } else {
        Format::Csr
    }
}

fn pack_one(w: &[f32], rows: usize, cols: usize, tuning: &Tuning) -> PackedMatrix {
    // Subnormal weights would make every product with them slow (see `kernels::cell::flush_subnormal`).
    let flushed: Vec<f32>;
    let w = if w.iter().any(|v| v.is_subnormal()) {
        flushed = w
            .iter()
            .map(|&v| kernels::cell::flush_subnormal(v))
            .collect();
        &flushed[..]
    } else {
        w
    };
    match tuning.choice {
        FormatChoice::Fixed(Format::Csr) => {
            PackedMatrix::pack(w, rows, cols, csr_for(tuning.dense))
        }
        FormatChoice::Fixed(f) => PackedMatrix::pack(w, rows, cols, dense_layout(f, tuning.nb)),
        FormatChoice::Auto => {
            let dense = dense_layout(tuning.dense, tuning.nb);
            let mut candidates = vec![dense];
            if mostly_zero(w) {
                candidates.push(csr_for(tuning.dense));
                candidates.extend(BLOCK_SHAPES.iter().map(|&(r, c)| Format::Bsr(r, c)));
            }
            if candidates.len() == 1 {
                return PackedMatrix::pack(w, rows, cols, dense);
            }
            let mut best: Option<(f64, PackedMatrix)> = None;
            for f in candidates {
                let m = PackedMatrix::pack(w, rows, cols, f);
                let t = time_product(&m, tuning.nb);
                if best.as_ref().is_none_or(|(bt, _)| t < *bt) {
                    best = Some((t, m));
                }
            }
            best.expect("one candidate at least").1
        }
    }
}

/// Median seconds of one full product at batch `nb` (a warm-up run, then 5 timed).
pub(crate) fn time_product(m: &PackedMatrix, nb: usize) -> f64 {
    let rng = CounterRng::new(17);
    let x: Vec<f32> = (0..(nb * m.cols()) as u64)
        .map(|i| rng.uniform(0, i) - 0.5)
        .collect();
    let mut y = vec![0f32; nb * m.rows()];
    let mut times = Vec::with_capacity(5);
    for rep in 0..6 {
        let start = Instant::now();
        m.acc(&x, m.cols(), nb, &mut y, m.rows(), 0..m.rows());
        if rep > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&y);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four dense gate blocks of `rows` x 3.
    fn dense_gates(rows: usize) -> GateMatrix {
        let tuning = Tuning {
            dense: Format::Dense,
            choice: FormatChoice::Fixed(Format::Dense),
            nb: 1,
        };
        GateMatrix::pack(&vec![0.5f32; 4 * rows * 3], rows, 3, &tuning).expect("packs")
    }

    #[test]
    fn balanced_pieces_cover_every_row_once_in_aligned_even_shares() {
        for rows in [1usize, 8, 31, 200, 650] {
            let m = dense_gates(rows);
            for parts in 1..5 {
                for align in [16, 32] {
                    let split = m.balanced_pieces(parts, align);
                    assert!(!split.is_empty() && split.len() <= parts);
                    let mut seen = vec![0u8; 4 * rows];
                    let mut shares = Vec::new();
                    for pieces in &split {
                        let mut share = 0;
                        for (k, r) in pieces {
                            assert!(r.start % align == 0 && (r.end % align == 0 || r.end == rows));
                            for i in r.clone() {
                                seen[k * rows + i] += 1;
                            }
                            share += r.len();
                        }
                        shares.push(share);
                    }
                    assert!(seen.iter().all(|&c| c == 1), "{rows} rows, {parts} parts");
                    let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                    if 4 * rows >= parts * align {
                        assert!(hi - lo <= 2 * align, "{rows} rows in {parts}: {shares:?}");
                    }
                }
            }
        }
        // More parts than aligned pieces: fewer lists, none empty.
        let small = dense_gates(8);
        let split = small.balanced_pieces(8, 16);
        assert_eq!(split.len(), 4);
        assert!(split.iter().all(|p| p.len() == 1 && p[0].1 == (0..8)));
        // H = 200 on two threads: two whole gates (14 of the 28 panels) each, not 12 and 16.
        let m = dense_gates(200);
        let rows: Vec<usize> = m
            .balanced_pieces(2, 32)
            .iter()
            .map(|p| p.iter().map(|(_, r)| r.len()).sum())
            .collect();
        assert_eq!(rows, vec![400, 400]);
    }
}
