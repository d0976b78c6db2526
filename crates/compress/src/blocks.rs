//! Block structure for pruning, growth and the sparse seed: each weight tensor, viewed as 2-D
//! (leading dimensions x last), is cut into `rows x cols` tiles, and `[compress] block = "RxC"`
//! makes every mask change act on whole tiles.
//!
//! Why: on a CPU, unstructured sparsity runs through a gather per non-zero, which this machine
//! does at about 1.7 cycles per non-zero; at 10% density and H = 1500 that gives 2.95x our dense
//! step, while 4x4 tiles (block-sparse kernels, no gathers) give 5.39x
//! (`python3 bench/sparse_curve.py --hidden 1500 --rounds 3`, docs/benchmarks.md). A model pruned
//! in tiles is one the block-sparse kernels can run at that speed.

use std::fmt;
use std::ops::Range;

/// The shape of the tiles masks change by; 1x1 is unstructured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    pub rows: usize,
    pub cols: usize,
}

/// Largest tile side accepted (beyond it a tile is most of a gate block at PTB sizes).
const MAX_SIDE: usize = 64;

impl BlockShape {
    /// Unstructured: every weight is its own tile.
    pub const UNIT: BlockShape = BlockShape { rows: 1, cols: 1 };

    /// Parses `RxC` (e.g. `4x4`, `1x16`), each side in 1..=64.
    pub fn parse(s: &str) -> Result<BlockShape, String> {
        let bad = || {
            format!(
                "block = \"{s}\": expected ROWSxCOLS with sides in 1..={MAX_SIDE}, e.g. \"4x4\""
            )
        };
        let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let (rows, cols): (usize, usize) = (
            r.trim().parse().map_err(|_| bad())?,
            c.trim().parse().map_err(|_| bad())?,
        );
        if !(1..=MAX_SIDE).contains(&rows) || !(1..=MAX_SIDE).contains(&cols) {
            return Err(bad());
        }
        Ok(BlockShape { rows, cols })
    }

    pub fn is_unit(&self) -> bool {
        *self == BlockShape::UNIT
    }

    /// The tiling of a tensor of `shape` (row-major) whose rows form `groups` equal groups that
    /// tiles must not straddle (1: the whole tensor is one group).
    pub fn tiling(&self, shape: &[usize], groups: usize) -> Tiling {
        let cols = shape.last().copied().unwrap_or(1);
        let rows = shape.iter().product::<usize>() / cols.max(1);
        let groups = if groups > 0 && rows.is_multiple_of(groups) {
            groups
        } else {
            1
        };
        Tiling {
            group_rows: rows / groups,
            groups,
            cols,
            block: *self,
        }
    }

    /// The tiling of a model tensor: the LSTM and H-LSTM weights (`rnn.weight*`) stack four gate
    /// blocks on their rows, which inference packs one by one (`infer::matrix::GateMatrix`), so
    /// their tiles are cut inside each gate block; with 4x4 tiles and H = 650 (not a multiple of
    /// 4) tiles over the whole matrix would straddle gates and every BSR block of the f and o
    /// gates would overlap two tiles.
    pub fn tiling_for(&self, spec: &model::TensorSpec) -> Tiling {
        let gates = if spec.name.starts_with("rnn.weight") {
            4
        } else {
            1
        };
        self.tiling(&spec.shape, gates)
    }
}

impl fmt::Display for BlockShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// One tensor's tiles, numbered group by group, then row of tiles by row of tiles; tiles at the
/// right edge and at the bottom of each row group are cut to it.
#[derive(Clone, Copy, Debug)]
pub struct Tiling {
    group_rows: usize,
    groups: usize,
    cols: usize,
    block: BlockShape,
}

impl Tiling {
    fn per_row(&self) -> usize {
        self.cols.div_ceil(self.block.cols)
    }

    fn per_group(&self) -> usize {
        self.group_rows.div_ceil(self.block.rows) * self.per_row()
    }

    /// Number of tiles.
    pub fn count(&self) -> usize {
        self.groups * self.per_group()
    }

    /// Rows `r0..r1` and columns `c0..c1` of tile `t`.
    fn bounds(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let per_row = self.per_row();
        let (g, t) = (t / self.per_group(), t % self.per_group());
        let base = g * self.group_rows;
        let (r0, c0) = (
            base + t / per_row * self.block.rows,
            t % per_row * self.block.cols,
        );
        (
            r0..(r0 + self.block.rows).min(base + self.group_rows),
            c0..(c0 + self.block.cols).min(self.cols),
        )
    }

    /// Offsets (inside the tensor) of tile `t`'s entries, row by row.
    pub fn offsets(&self, t: usize) -> impl Iterator<Item = usize> {
        let (rows, cols) = self.bounds(t);
        let ld = self.cols;
        rows.flat_map(move |r| cols.clone().map(move |c| r * ld + c))
    }

    /// Entries of tile `t` (smaller at the edges).
    pub fn len(&self, t: usize) -> usize {
        let (rows, cols) = self.bounds(t);
        rows.len() * cols.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            BlockShape::parse("4x4").unwrap(),
            BlockShape { rows: 4, cols: 4 }
        );
        assert_eq!(BlockShape::parse("1x16").unwrap().to_string(), "1x16");
        assert!(BlockShape::parse("1x1").unwrap().is_unit());
        for bad in ["4", "0x4", "4x0", "4x65", "ax4", "4x4x4", ""] {
            assert!(
                BlockShape::parse(bad).unwrap_err().contains("ROWSxCOLS"),
                "{bad}"
            );
        }
    }

    #[test]
    fn edge_tiles_are_cut_to_the_tensor() {
        let t = BlockShape { rows: 2, cols: 3 }.tiling(&[3, 4], 1);
        assert_eq!(t.count(), 4);
        assert_eq!(t.offsets(0).collect::<Vec<_>>(), vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(t.offsets(1).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(t.offsets(2).collect::<Vec<_>>(), vec![8, 9, 10]);
        assert_eq!(t.offsets(3).collect::<Vec<_>>(), vec![11]);
    }

    #[test]
    fn gate_stacked_weights_are_tiled_inside_each_gate() {
        // 4 gates of H = 6 rows: 4x4 tiles start at rows 0, 4 | 6, 10 | 12, 16 | 18, 22.
        let spec = model::TensorSpec {
            name: "rnn.weight_hh_l0".into(),
            shape: vec![24, 4],
            offset: 0,
        };
        let t = BlockShape { rows: 4, cols: 4 }.tiling_for(&spec);
        assert_eq!(t.count(), 8);
        let starts: Vec<usize> = (0..8).map(|i| t.offsets(i).next().unwrap() / 4).collect();
        assert_eq!(starts, vec![0, 4, 6, 10, 12, 16, 18, 22]);
        assert_eq!(t.len(1), 8, "a 2-row tile at the bottom of the first gate");
        // The decoder is one matrix.
        let dec = model::TensorSpec {
            name: "decoder.weight".into(),
            shape: vec![24, 4],
            offset: 0,
        };
        assert_eq!(BlockShape { rows: 4, cols: 4 }.tiling_for(&dec).count(), 6);
        assert_eq!(BlockShape::parse("4X4").unwrap().to_string(), "4x4");
    }

    proptest! {
        #[test]
        fn tiles_cover_every_entry_once(rows in 1usize..20, cols in 1usize..20, lead in 1usize..3,
                                        br in 1usize..6, bc in 1usize..6, groups in 1usize..5) {
            let shape = if lead > 1 { vec![lead, rows, cols] } else { vec![rows, cols] };
            let tiling = BlockShape { rows: br, cols: bc }.tiling(&shape, groups);
            let mut seen = vec![0u8; shape.iter().product()];
            for t in 0..tiling.count() {
                for o in tiling.offsets(t) {
                    seen[o] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }
}
