//! Packed weight matrices for inference — dense f32, dense bf16, CSR, block-sparse — behind one
//! product, `y[b, r] += W[r, :] · x[b, :]` over a range of rows, with a naive reference beside it
//! (the test oracle). Rows are the output (gate) dimension, as in PyTorch's `[4H, I]` weights.

mod amx;
mod bsr;
mod csr;
mod dense;

pub use amx::available as amx_supported;
pub use bsr::{Bsr, BLOCK_SHAPES};
pub use csr::{gather_label, gather_mode, Csr, GatherMode, Indices, GATHER_ENV};
pub use dense::{bf16_to_f32, f32_to_bf16};

use crate::isa::{self, Isa};
use aligned_vec::{AVec, ConstAlign};
use dense::{dense_acc, DenseRows, DenseWeights};
use std::fmt;
use std::ops::Range;

/// Whether bf16 plans may use AMX tiles: the process runs at the `amx` level
/// ([`isa::active`]; forcing a lower level turns them off).
pub fn amx_available() -> bool {
    isa::active() == Isa::Amx
}

/// Alignment of packed weights, bytes: one cache line, so that no 64-byte load straddles two
/// lines (an unaligned load costs two L1 accesses; from L2 the batch-1 product ran at half
/// speed, docs/benchmarks.md). Dense rows are padded to a multiple of it as well.
pub const ALIGN: usize = 64;

/// A cache-line-aligned buffer.
pub type Lines<T> = AVec<T, ConstAlign<ALIGN>>;

/// The batch side of one product `y[b * ldy + r] += W[r, :] · x[b * ldx ..][..K]`, `b < nb`:
/// what every kernel below takes besides its weights and row range.
///
/// `y` is raw so that threads can fill disjoint rows of one buffer; whoever builds an `Operands`
/// vouches that `x` holds `nb` rows of `ldx ≥ K`, that `y` is valid for reads and writes at
/// `b * ldy + r` for the rows a kernel is given, and that no other thread touches those
/// elements meanwhile (the `# Safety` of every kernel refers to this).
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub x: &'a [f32],
    pub ldx: usize,
    pub nb: usize,
    pub y: *mut f32,
    pub ldy: usize,
}

/// Values of `T` per cache line.
fn per_line<T>() -> usize {
    ALIGN / std::mem::size_of::<T>()
}

/// An aligned buffer of `len` zeros (`T::default()`), for the packers to fill.
pub(crate) fn zeroed_lines<T: Copy + Default>(len: usize) -> Lines<T> {
    Lines::from_iter(ALIGN, std::iter::repeat_n(T::default(), len))
}

/// Row-major `[rows, k]` copied into an aligned buffer with rows `ld` apart (`ld` ≥ `k`, the
/// padding zero).
fn padded_rows<T: Copy + Default>(w: &[T], rows: usize, k: usize, ld: usize) -> Lines<T> {
    let mut out = zeroed_lines(rows * ld);
    for r in 0..rows {
        out[r * ld..r * ld + k].copy_from_slice(&w[r * k..(r + 1) * k]);
    }
    out
}

/// Storage formats a matrix can be packed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Row-major f32.
    Dense,
    /// Row-major bf16 (round to nearest even), widened to f32 in the kernel.
    Bf16,
    /// f32 in 32-row panels `[K][32]`: the layout for wide batches (x broadcast, no reductions).
    Panel,
    /// bf16 in 32-row panels.
    Bf16Panel,
    /// bf16 AMX tiles (16 rows x 32 columns), x rounded to bf16 too: the wide-batch layout of
    /// bf16 plans on CPUs with AMX-BF16 (`amx_available`).
    Bf16Amx,
    /// Compressed sparse rows, f32 values, u16/u32 column indices.
    Csr,
    /// CSR with bf16 values (4 bytes per non-zero with u16 indices).
    CsrBf16,
    /// Block-sparse rows with `(rows, cols)` blocks, one of [`BLOCK_SHAPES`].
    Bsr(usize, usize),
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Dense => write!(f, "dense"),
            Format::Bf16 => write!(f, "bf16"),
            Format::Panel => write!(f, "panel"),
            Format::Bf16Panel => write!(f, "bf16-panel"),
            Format::Bf16Amx => write!(f, "bf16-amx"),
            Format::Csr => write!(f, "csr"),
            Format::CsrBf16 => write!(f, "csr-bf16"),
            Format::Bsr(r, c) => write!(f, "bsr{r}x{c}"),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `dense`, `bf16`, `csr`, `bsr` (4x4 blocks) or `bsrRxC` (e.g. `bsr1x8`).
    fn from_str(s: &str) -> Result<Format, String> {
        let bad = || {
            let shapes: Vec<String> = BLOCK_SHAPES
                .iter()
                .map(|(r, c)| format!("bsr{r}x{c}"))
                .collect();
            format!(
                "unknown matrix format `{s}`: expected dense, bf16, csr, bsr or one of {}",
                shapes.join(", ")
            )
        };
        match s {
            "dense" => Ok(Format::Dense),
            "bf16" => Ok(Format::Bf16),
            "panel" => Ok(Format::Panel),
            "bf16-panel" => Ok(Format::Bf16Panel),
            "bf16-amx" => Ok(Format::Bf16Amx),
            "csr" => Ok(Format::Csr),
            "csr-bf16" => Ok(Format::CsrBf16),
            "bsr" => Ok(Format::Bsr(4, 4)),
            _ => {
                let rest = s.strip_prefix("bsr").ok_or_else(bad)?;
                let (r, c) = rest.split_once('x').ok_or_else(bad)?;
                let shape = (r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?);
                if BLOCK_SHAPES.contains(&shape) {
                    Ok(Format::Bsr(shape.0, shape.1))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Storage {
    /// Rows `ld` apart (a whole number of cache lines).
    Dense {
        w: Lines<f32>,
        ld: usize,
    },
    Bf16 {
        w: Lines<u16>,
        ld: usize,
    },
    Panel(Lines<f32>),
    Bf16Panel(Lines<u16>),
    Bf16Amx(Lines<u16>),
    Csr(Csr),
    Bsr(Bsr),
}

/// A `[rows, cols]` weight matrix in one of the [`Format`]s.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    storage: Storage,
}

impl PackedMatrix {
    /// Packs a row-major dense matrix.
    ///
    /// # Panics
    /// If `w.len() != rows * cols` (a programming error).
    pub fn pack(w: &[f32], rows: usize, cols: usize, format: Format) -> PackedMatrix {
        assert_eq!(
            w.len(),
            rows * cols,
            "matrix of {rows}x{cols} needs {} values",
            rows * cols
        );
        let storage = match format {
            Format::Dense => {
                let ld = cols.next_multiple_of(per_line::<f32>());
                Storage::Dense {
                    w: padded_rows(w, rows, cols, ld),
                    ld,
                }
            }
            Format::Bf16 => {
                let ld = cols.next_multiple_of(per_line::<u16>());
                let b: Vec<u16> = w.iter().map(|&v| f32_to_bf16(v)).collect();
                Storage::Bf16 {
                    w: padded_rows(&b, rows, cols, ld),
                    ld,
                }
            }
            Format::Panel => Storage::Panel(dense::pack_panels(w, rows, cols)),
            Format::Bf16Panel => {
                let b: Vec<u16> = w.iter().map(|&v| f32_to_bf16(v)).collect();
                Storage::Bf16Panel(dense::pack_panels(&b, rows, cols))
            }
            Format::Bf16Amx => Storage::Bf16Amx(amx::pack(w, rows, cols)),
            Format::Csr => Storage::Csr(Csr::from_dense(w, rows, cols)),
            Format::CsrBf16 => Storage::Csr(Csr::from_dense(w, rows, cols).into_bf16()),
            Format::Bsr(br, bc) => Storage::Bsr(Bsr::from_dense(w, rows, cols, br, bc)),
        };
        PackedMatrix {
            rows,
            cols,
            storage,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> Format {
        match &self.storage {
            Storage::Dense { .. } => Format::Dense,
            Storage::Bf16 { .. } => Format::Bf16,
            Storage::Panel(_) => Format::Panel,
            Storage::Bf16Panel(_) => Format::Bf16Panel,
            Storage::Bf16Amx(_) => Format::Bf16Amx,
            Storage::Csr(c) if !c.vals16.is_empty() => Format::CsrBf16,
            Storage::Csr(_) => Format::Csr,
            Storage::Bsr(b) => Format::Bsr(b.br, b.bc),
        }
    }

    /// Row granularity of [`PackedMatrix::acc`]'s row ranges (the block height for BSR).
    pub fn row_align(&self) -> usize {
        match &self.storage {
            Storage::Bsr(b) => b.br,
            Storage::Panel(_) | Storage::Bf16Panel(_) => dense::PANEL_ROWS,
            Storage::Bf16Amx(_) => amx::PANEL_ROWS,
            _ => 1,
        }
    }

    /// Stored values that are not zero.
    pub fn nnz(&self) -> usize {
        match &self.storage {
            // The row padding is zero.
            Storage::Dense { w, .. } => w.iter().filter(|v| **v != 0.0).count(),
            Storage::Bf16 { w, .. } => w.iter().filter(|v| (**v & 0x7fff) != 0).count(),
            Storage::Panel(_) | Storage::Bf16Panel(_) | Storage::Bf16Amx(_) => {
                self.to_dense().iter().filter(|v| **v != 0.0).count()
            }
            Storage::Csr(c) => c.nnz(),
            Storage::Bsr(b) => b.vals.iter().filter(|v| **v != 0.0).count(),
        }
    }

    /// Bytes one full product reads from the weights (values, indices, pointers).
    pub fn bytes(&self) -> usize {
        match &self.storage {
            // The padding shares the rows' last cache lines, so it is read too.
            Storage::Dense { w, .. } => w.len() * 4,
            Storage::Bf16 { w, .. } => w.len() * 2,
            Storage::Panel(w) => w.len() * 4,
            Storage::Bf16Panel(w) => w.len() * 2,
            Storage::Bf16Amx(w) => w.len() * 2,
            Storage::Csr(c) => c.bytes(),
            Storage::Bsr(b) => b.bytes(),
        }
    }

    /// The matrix as row-major f32 (bf16 values widened).
    pub fn to_dense(&self) -> Vec<f32> {
        match &self.storage {
            Storage::Dense { w, ld } => w
                .chunks((*ld).max(1))
                .flat_map(|row| row[..self.cols].iter().copied())
                .collect(),
            Storage::Bf16 { w, ld } => w
                .chunks((*ld).max(1))
                .flat_map(|row| row[..self.cols].iter().map(|&v| bf16_to_f32(v)))
                .collect(),
            Storage::Panel(_) | Storage::Bf16Panel(_) => {
                let value = |at: usize| match &self.storage {
                    Storage::Panel(w) => w[at],
                    Storage::Bf16Panel(w) => bf16_to_f32(w[at]),
                    _ => unreachable!("panel storage"),
                };
                let (p, k) = (dense::PANEL_ROWS, self.cols);
                let mut out = vec![0.0; self.rows * k];
                for r in 0..self.rows {
                    for j in 0..k {
                        out[r * k + j] = value((r / p * k + j) * p + r % p);
                    }
                }
                out
            }
            Storage::Bf16Amx(w) => {
                let k = self.cols;
                let mut out = vec![0.0; self.rows * k];
                for r in 0..self.rows {
                    for j in 0..k {
                        out[r * k + j] = amx::value(w, k, r, j);
                    }
                }
                out
            }
            Storage::Csr(c) => {
                let mut out = vec![0.0; self.rows * self.cols];
                for r in 0..self.rows {
                    for p in c.row_ptr[r] as usize..c.row_ptr[r + 1] as usize {
                        out[r * self.cols + c.col_idx.get(p)] = c.value(p);
                    }
                }
                out
            }
            Storage::Bsr(b) => {
                let mut out = vec![0.0; self.rows * self.cols];
                for i in 0..self.rows.div_ceil(b.br) {
                    for blk in b.block_ptr[i] as usize..b.block_ptr[i + 1] as usize {
                        let c0 = b.block_col.get(blk) * b.bc;
                        for a in 0..b.br {
                            for cc in 0..b.bc {
                                let (r, c) = (i * b.br + a, c0 + cc);
                                if r < self.rows && c < self.cols {
                                    out[r * self.cols + c] = b.vals[(blk * b.br + a) * b.bc + cc];
                                }
                            }
                        }
                    }
                }
                out
            }
        }
    }

    fn check(
        &self,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y_len: usize,
        ldy: usize,
        rows: &Range<usize>,
    ) {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "rows {rows:?} outside 0..{}",
            self.rows
        );
        assert!(
            ldx >= self.cols && ldy >= rows.end,
            "leading dimensions too small"
        );
        if nb > 0 {
            assert!(x.len() >= (nb - 1) * ldx + self.cols, "x too short");
            assert!(y_len >= (nb - 1) * ldy + rows.end, "y too short");
        }
        let a = self.row_align();
        assert!(
            rows.start.is_multiple_of(a) && (rows.end.is_multiple_of(a) || rows.end == self.rows),
            "rows not block-aligned"
        );
    }

    /// `y[b * ldy + r] += W[r, :] · x[b * ldx ..][..cols]` for `r` in `rows`, `b < nb`.
    ///
    /// # Panics
    /// If a slice is too short or `rows` is out of range or not a multiple of [`row_align`].
    ///
    /// [`row_align`]: PackedMatrix::row_align
    pub fn acc(
        &self,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: &mut [f32],
        ldy: usize,
        rows: Range<usize>,
    ) {
        self.acc_at(isa::active(), x, ldx, nb, y, ldy, rows)
    }

    /// [`PackedMatrix::acc`] at an explicit ISA level (tests and benchmarks compare levels in one
    /// process). `Bf16Amx` matrices run their tile kernel only at the `amx` level.
    ///
    /// # Panics
    /// As `acc`, and if this CPU lacks `level`.
    #[allow(clippy::too_many_arguments)]
    pub fn acc_at(
        &self,
        level: Isa,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: &mut [f32],
        ldy: usize,
        rows: Range<usize>,
    ) {
        self.check(x, ldx, nb, y.len(), ldy, &rows);
        assert!(level.supported(), "ISA level {level} is not supported here");
        let o = Operands {
            x,
            ldx,
            nb,
            y: y.as_mut_ptr(),
            ldy,
        };
        // SAFETY: bounds checked above; `y` is borrowed mutably for the whole call.
        unsafe { self.acc_unchecked(level, o, rows) }
    }

    /// [`PackedMatrix::acc`] through a raw output pointer, so threads can fill disjoint row
    /// ranges of one output buffer.
    ///
    /// # Safety
    /// `y` must be valid for reads and writes at `b * ldy + r` for every `b < nb`, `r` in `rows`,
    /// and no other thread may access those elements during the call. The other arguments are
    /// checked as in `acc`.
    pub unsafe fn acc_raw(
        &self,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: *mut f32,
        ldy: usize,
        rows: Range<usize>,
    ) {
        self.check(x, ldx, nb, usize::MAX, ldy, &rows);
        let o = Operands { x, ldx, nb, y, ldy };
        // SAFETY: forwarded contract; `active` is supported by construction.
        unsafe { self.acc_unchecked(isa::active(), o, rows) }
    }

    unsafe fn acc_unchecked(&self, level: Isa, o: Operands<'_>, rows: Range<usize>) {
        let Operands { nb, .. } = o;
        if nb == 0 || rows.is_empty() {
            return;
        }
        let k = self.cols;
        // SAFETY (all arms): bounds checked by the callers; `y` contract forwarded.
        unsafe {
            match &self.storage {
                Storage::Dense { w, ld } => {
                    dense_acc(level, DenseRows::new(DenseWeights::F32(w), k, *ld), o, rows)
                }
                Storage::Bf16 { w, ld } => dense_acc(
                    level,
                    DenseRows::new(DenseWeights::Bf16(w), k, *ld),
                    o,
                    rows,
                ),
                Storage::Panel(w) => dense::panel_acc(level, DenseWeights::F32(w), k, o, rows),
                Storage::Bf16Panel(w) => dense::panel_acc(level, DenseWeights::Bf16(w), k, o, rows),
                Storage::Bf16Amx(w) => amx::acc(level, w, k, o, rows),
                Storage::Csr(c) => c.acc(level, o, rows),
                Storage::Bsr(b) => b.acc(level, o, rows),
            }
        }
    }

    /// Naive reference of [`PackedMatrix::acc`] over the unpacked values, accumulated in f64
    /// (x rounded to bf16 first for `Bf16Amx`, as its kernel does).
    pub fn acc_reference(
        &self,
        x: &[f32],
        ldx: usize,
        nb: usize,
        y: &mut [f32],
        ldy: usize,
        rows: Range<usize>,
    ) {
        let w = self.to_dense();
        let rounds_x = matches!(self.storage, Storage::Bf16Amx(_));
        for b in 0..nb {
            for r in rows.clone() {
                let mut s = 0f64;
                for c in 0..self.cols {
                    let xv = x[b * ldx + c];
                    let xv = if rounds_x { amx::round_input(xv) } else { xv };
                    s += w[r * self.cols + c] as f64 * xv as f64;
                }
                y[b * ldy + r] += s as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::CounterRng;
    use proptest::prelude::*;

    fn random_matrix(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        let rng = CounterRng::new(seed);
        (0..(rows * cols) as u64)
            .map(|i| {
                let keep = rng.uniform_f64(0, i) < density;
                let v = rng.uniform(1, i) * 2.0 - 1.0;
                if keep {
                    v
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Largest difference over the scale of `want` (at least 1e-3); fails on NaN and on length
    /// mismatch (`crate::check`).
    fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
        crate::check::max_rel_diff(got, want, 1e-3) as f32
    }

    fn check_format(format: Format, rows: usize, cols: usize, nb: usize, density: f64, seed: u64) {
        let w = random_matrix(rows, cols, density, seed);
        let m = PackedMatrix::pack(&w, rows, cols, format);
        let ldx = cols + 3;
        let x = random_matrix(nb.max(1), ldx, 1.0, seed + 1);
        let ldy = rows + 5;
        let y0 = random_matrix(nb.max(1), ldy, 1.0, seed + 2);
        // The reference sees the packed values (bf16-rounded for Bf16), so any difference is the
        // kernel's, not the format's.
        let mut want = y0.clone();
        m.acc_reference(&x, ldx, nb, &mut want, ldy, 0..rows);
        for level in isa::supported() {
            let mut got = y0.clone();
            m.acc_at(level, &x, ldx, nb, &mut got, ldy, 0..rows);
            let err = max_rel_err(&got, &want);
            assert!(
                err < 2e-5,
                "{format} at {level} {rows}x{cols} nb={nb} d={density}: max rel err {err}"
            );
        }
        // A row sub-range leaves the other rows alone.
        let a = m.row_align();
        if rows >= 2 * a {
            let split = (rows / 2) / a * a;
            let mut part = y0.clone();
            m.acc(&x, ldx, nb, &mut part, ldy, split..rows);
            for b in 0..nb {
                for r in 0..split {
                    assert_eq!(part[b * ldy + r], y0[b * ldy + r]);
                }
            }
        }
        assert_eq!(
            PackedMatrix::pack(&m.to_dense(), rows, cols, Format::Dense).to_dense(),
            m.to_dense()
        );
    }

    #[test]
    fn every_format_matches_the_reference_at_model_shapes() {
        let mut formats = vec![
            Format::Dense,
            Format::Bf16,
            Format::Panel,
            Format::Bf16Panel,
            Format::Bf16Amx,
            Format::Csr,
        ];
        formats.extend(BLOCK_SHAPES.iter().map(|&(r, c)| Format::Bsr(r, c)));
        for format in formats {
            for &(rows, cols) in &[(800, 200), (52, 13), (7, 33)] {
                for nb in [1, 2, 3, 4, 5, 16, 35, 70] {
                    check_format(format, rows, cols, nb, 0.3, 7);
                }
            }
        }
    }

    #[test]
    fn portable_dense_kernel_matches_the_reference() {
        let (rows, cols, nb) = (37, 45, 3);
        let w = random_matrix(rows, cols, 1.0, 3);
        let x = random_matrix(nb, cols, 1.0, 4);
        let m = PackedMatrix::pack(&w, rows, cols, Format::Dense);
        let mut want = vec![0.5; nb * rows];
        m.acc_reference(&x, cols, nb, &mut want, rows, 0..rows);
        let mut got = vec![0.5; nb * rows];
        // SAFETY: got has nb * rows elements, exclusively borrowed.
        unsafe {
            dense::portable_dense_acc(
                DenseRows::new(DenseWeights::F32(&w), cols, cols),
                Operands {
                    x: &x,
                    ldx: cols,
                    nb,
                    y: got.as_mut_ptr(),
                    ldy: rows,
                },
                0..rows,
            )
        };
        assert!(max_rel_err(&got, &want) < 2e-5);
    }

    #[test]
    fn portable_amx_layout_kernel_matches_the_reference() {
        // k not a multiple of 32 and a partial last panel: the padding must stay out of y.
        let (rows, cols, nb) = (45, 37, 5);
        let w = random_matrix(rows, cols, 1.0, 5);
        let x = random_matrix(nb, cols, 1.0, 6);
        let m = PackedMatrix::pack(&w, rows, cols, Format::Bf16Amx);
        let Storage::Bf16Amx(packed) = &m.storage else {
            unreachable!("bf16-amx storage")
        };
        let mut want = vec![0.5; nb * rows];
        m.acc_reference(&x, cols, nb, &mut want, rows, 0..rows);
        let mut got = vec![0.5; nb * rows];
        let o = Operands {
            x: &x,
            ldx: cols,
            nb,
            y: got.as_mut_ptr(),
            ldy: rows,
        };
        // SAFETY: got has nb * rows elements, exclusively borrowed.
        unsafe { amx::portable(packed, cols, o, 0..rows) };
        assert!(max_rel_err(&got, &want) < 2e-5);
        // Rounding x is what the format adds: against unrounded x it is ~2^-9 off.
        let mut exact = vec![0.5; nb * rows];
        PackedMatrix::pack(&m.to_dense(), rows, cols, Format::Dense).acc_reference(
            &x,
            cols,
            nb,
            &mut exact,
            rows,
            0..rows,
        );
        let e = max_rel_err(&got, &exact);
        assert!(e > 1e-5 && e < 1e-2, "{e}");
    }

    #[test]
    fn bf16_rounding_is_nearest_even_and_widening_exact() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        for v in [0.0f32, -2.5, 3.0e-5, 65504.0] {
            let back = bf16_to_f32(f32_to_bf16(v));
            assert!((back - v).abs() <= v.abs() / 128.0, "{v} -> {back}");
        }
    }

    #[test]
    fn formats_parse_and_print() {
        for s in [
            "dense",
            "bf16",
            "panel",
            "bf16-panel",
            "bf16-amx",
            "csr",
            "bsr4x4",
            "bsr1x8",
        ] {
            assert_eq!(s.parse::<Format>().unwrap().to_string(), s);
        }
        assert_eq!("bsr".parse::<Format>().unwrap(), Format::Bsr(4, 4));
        assert!("bsr3x3".parse::<Format>().unwrap_err().contains("bsr1x8"));
        assert!("coo".parse::<Format>().is_err());
    }

    #[test]
    fn dense_rows_start_on_cache_lines() {
        // 40 x 13: two 32-row panels (the second partial), three 16-row AMX panels, and rows
        // whose 13 values do not fill a line; strides are read off the packed storage itself.
        let (rows, cols) = (40, 13);
        let w = random_matrix(rows, cols, 1.0, 5);
        for format in [
            Format::Dense,
            Format::Bf16,
            Format::Panel,
            Format::Bf16Panel,
            Format::Bf16Amx,
        ] {
            let m = PackedMatrix::pack(&w, rows, cols, format);
            let blocks = |len: usize, n: usize| {
                assert_eq!(len % n, 0, "{format}: {len} values in {n} equal blocks");
                len / n
            };
            let panels = rows.div_ceil(m.row_align());
            let (base, stride_bytes) = match &m.storage {
                Storage::Dense { w, ld } => (w.as_ptr() as usize, ld * 4),
                Storage::Bf16 { w, ld } => (w.as_ptr() as usize, ld * 2),
                Storage::Panel(w) => (w.as_ptr() as usize, blocks(w.len(), panels) * 4),
                Storage::Bf16Panel(w) => (w.as_ptr() as usize, blocks(w.len(), panels) * 2),
                Storage::Bf16Amx(w) => {
                    let tiles = rows.div_ceil(16) * cols.div_ceil(32);
                    (w.as_ptr() as usize, blocks(w.len(), tiles) * 2)
                }
                _ => unreachable!("dense formats only"),
            };
            assert_eq!(base % ALIGN, 0, "{format}: buffer not line-aligned");
            assert!(stride_bytes > 0);
            assert_eq!(
                stride_bytes % ALIGN,
                0,
                "{format}: rows / panels / tiles not a whole number of lines ({stride_bytes} B)"
            );
            // Against the source weights (rounded where the format stores bf16), never against
            // another packing: a packer that drops or moves entries fails here.
            let rounded: Vec<f32> = w.iter().map(|&v| bf16_to_f32(f32_to_bf16(v))).collect();
            let want = if matches!(format, Format::Dense | Format::Panel) {
                &w
            } else {
                &rounded
            };
            assert_eq!(&m.to_dense(), want, "{format}: values moved");
        }
    }

    #[test]
    fn csr_gather_modes_match_the_reference_at_every_level() {
        // u16 and u32 indices (K > 65 536), f32 and bf16 values, every few-batch width, padded
        // strides, rows with 0–3 non-zeros (shorter than any vector) and rows longer than one,
        // and a row range that starts mid-matrix.
        for &(rows, cols) in &[(37, 300), (5, 70_000)] {
            for format in [Format::Csr, Format::CsrBf16] {
                let mut w = random_matrix(rows, cols, 0.07, 21);
                for (r, keep) in [(1, 0), (2, 1), (3, 3)] {
                    let row = &mut w[r * cols..(r + 1) * cols];
                    let nz: Vec<usize> = (0..cols).filter(|&c| row[c] != 0.0).collect();
                    nz.iter().skip(keep).for_each(|&c| row[c] = 0.0);
                }
                let m = PackedMatrix::pack(&w, rows, cols, format);
                let Storage::Csr(c) = &m.storage else {
                    unreachable!("csr storage")
                };
                assert_eq!(c.row_ptr[4] - c.row_ptr[1], 4, "rows 1–3 hold 0 + 1 + 3");
                let (ldx, ldy) = (cols + 3, rows + 5);
                for nb in 1..csr::TRANSPOSE_FROM {
                    let x = random_matrix(nb, ldx, 1.0, 22);
                    let y0 = random_matrix(nb, ldy, 1.0, 23);
                    let mut want = y0.clone();
                    m.acc_reference(&x, ldx, nb, &mut want, ldy, 1..rows);
                    for level in isa::supported() {
                        for mode in [GatherMode::Vector, GatherMode::Scalar] {
                            let mut got = y0.clone();
                            let o = Operands {
                                x: &x,
                                ldx,
                                nb,
                                y: got.as_mut_ptr(),
                                ldy,
                            };
                            // SAFETY: got holds nb rows of ldy ≥ rows, exclusively borrowed.
                            unsafe { c.acc_mode(level, mode, o, 1..rows) };
                            let err = max_rel_err(&got, &want);
                            assert!(
                                err < 2e-5,
                                "{format} {mode:?} at {level} {rows}x{cols} nb={nb}: {err}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_rows_and_columns_are_handled() {
        let w = vec![0.0; 6 * 40];
        for format in [Format::Csr, Format::Bsr(4, 4), Format::Dense] {
            let m = PackedMatrix::pack(&w, 6, 40, format);
            let x = vec![1.0; 40];
            let mut y = vec![2.0; 6];
            m.acc(&x, 40, 1, &mut y, 6, 0..6);
            assert_eq!(y, vec![2.0; 6]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_shapes_densities_and_batches(
            rows in 1usize..70, cols in 1usize..90, nb in prop::sample::select(vec![1usize, 2, 3, 5, 8, 17, 64, 80]),
            density in prop::sample::select(vec![0.0, 0.02, 0.1, 0.5, 1.0]),
            which in 0usize..13, seed in 0u64..1000,
        ) {
            let mut formats = vec![Format::Dense, Format::Bf16, Format::Panel, Format::Bf16Panel, Format::Bf16Amx, Format::Csr, Format::CsrBf16];
            formats.extend(BLOCK_SHAPES.iter().map(|&(r, c)| Format::Bsr(r, c)));
            check_format(formats[which], rows, cols, nb, density, seed);
        }
    }
}
