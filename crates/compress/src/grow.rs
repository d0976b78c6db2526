//! Gradient-based connection growth (NeST): accumulate the dense gradient of the masked weights
//! over several mini-batches, dormant positions included, then activate the dormant connections
//! with the largest |accumulated gradient|.

use crate::blocks::BlockShape;
use crate::prune::locate;
use crate::MaskSet;

/// Sums gradients over mini-batches.
#[derive(Clone, Debug)]
pub struct GradientAccumulator {
    pub sum: Vec<f32>,
    pub batches: usize,
}

impl GradientAccumulator {
    pub fn new(n: usize) -> Self {
        Self {
            sum: vec![0.0; n],
            batches: 0,
        }
    }

    /// Adds one mini-batch's (unclipped, unmasked) gradient.
    pub fn add(&mut self, grads: &[f32]) {
        assert_eq!(grads.len(), self.sum.len());
        for (s, &g) in self.sum.iter_mut().zip(grads) {
            *s += g;
        }
        self.batches += 1;
    }

    pub fn reset(&mut self) {
        self.sum.fill(0.0);
        self.batches = 0;
    }
}

/// How a grown connection starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GrowInit {
    /// At zero: the function is unchanged until training moves it.
    Zero,
    /// At −step · (mean accumulated gradient): a small step downhill.
    GradientStep(f32),
}

impl GrowInit {
    /// The starting value of grown entry `i` (flat index) given the accumulated gradients.
    fn value(self, acc: &GradientAccumulator, i: usize) -> f32 {
        match self {
            GrowInit::Zero => 0.0,
            GrowInit::GradientStep(step) => -step * acc.sum[i] * (1.0 / acc.batches.max(1) as f32),
        }
    }
}

/// Activates, in every selected tensor, the top `fraction` of its dormant entries by
/// |accumulated gradient| (ties by position). Returns the number grown.
pub fn grow_by_gradient(
    params: &mut [f32],
    masks: &mut MaskSet,
    acc: &GradientAccumulator,
    fraction: f64,
    init: GrowInit,
) -> usize {
    assert!(
        (0.0..=1.0).contains(&fraction),
        "growth fraction {fraction} out of [0, 1]"
    );
    let layout = masks.layout().clone();
    let mut grown = 0;
    for t in masks.selected().collect::<Vec<_>>() {
        let range = layout.range(t);
        let mut dormant: Vec<(f32, usize)> = range
            .clone()
            .zip(masks.tensor(t))
            .filter(|(_, &m)| m == 0.0)
            .map(|(i, _)| (acc.sum[i].abs(), i))
            .collect();
        let n = (fraction * dormant.len() as f64).round() as usize;
        // Largest |gradient| first; position breaks ties.
        dormant.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &dormant[..n] {
            let (tt, off) = locate(&layout, i);
            masks.tensor_mut(tt)[off] = 1.0;
            params[i] = init.value(acc, i);
        }
        grown += n;
    }
    grown
}

/// [`grow_by_gradient`] in whole tiles of `block`: in every selected tensor, the fully dormant
/// tiles with the largest mean square of accumulated gradient are activated until at least
/// `fraction` of the tensor's dormant entries are (at most one tile beyond). With a 1x1 block
/// this is exactly [`grow_by_gradient`]. Returns the number of entries grown.
pub fn grow_by_gradient_blocks(
    params: &mut [f32],
    masks: &mut MaskSet,
    acc: &GradientAccumulator,
    fraction: f64,
    init: GrowInit,
    block: BlockShape,
) -> usize {
    if block.is_unit() {
        return grow_by_gradient(params, masks, acc, fraction, init);
    }
    assert!(
        (0.0..=1.0).contains(&fraction),
        "growth fraction {fraction} out of [0, 1]"
    );
    let mut grown = 0;
    for t in masks.selected().collect::<Vec<_>>() {
        let spec = masks.layout().get(t).clone();
        let tiling = block.tiling_for(&spec);
        let dormant = masks.tensor(t).iter().filter(|&&m| m == 0.0).count();
        let target = (fraction * dormant as f64).round() as usize;
        // (mean square gradient, tile, entries) of the fully dormant tiles.
        let mut tiles: Vec<(f64, usize, usize)> = (0..tiling.count())
            .filter(|&tile| tiling.offsets(tile).all(|o| masks.tensor(t)[o] == 0.0))
            .map(|tile| {
                let norm: f64 = tiling
                    .offsets(tile)
                    .map(|o| (acc.sum[spec.offset + o] as f64).powi(2))
                    .sum();
                // Mean square, so cut edge tiles are not ranked low for being small.
                let n = tiling.len(tile);
                (norm / n as f64, tile, n)
            })
            .collect();
        // Largest mean square first; position breaks ties.
        tiles.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut here = 0;
        for (_, tile, n) in tiles {
            if here >= target {
                break;
            }
            let m = masks.tensor_mut(t);
            for o in tiling.offsets(tile) {
                m[o] = 1.0;
                let i = spec.offset + o;
                params[i] = init.value(acc, i);
            }
            here += n;
        }
        grown += here;
    }
    grown
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ParamLayout;

    #[test]
    fn grows_the_largest_gradient_dormant_connections() {
        let mut l = ParamLayout::new();
        l.push("w", &[2, 4]);
        let mut masks = MaskSet::weights(&l, true);
        masks
            .tensor_mut(0)
            .copy_from_slice(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
        let mut params = vec![0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5, 0.0];
        let mut acc = GradientAccumulator::new(8);
        acc.add(&[9.0, 0.1, -3.0, 9.0, 0.2, 2.0, 9.0, -0.3]);
        acc.add(&[9.0, 0.1, -3.0, 9.0, 0.2, 2.0, 9.0, -0.3]);
        // 5 dormant; 40% → 2: |sum| 6 (index 2) and 4 (index 5). Active entries with larger
        // gradients (0, 3, 6) are not candidates.
        let n = grow_by_gradient(
            &mut params,
            &mut masks,
            &acc,
            0.4,
            GrowInit::GradientStep(0.5),
        );
        assert_eq!(n, 2);
        assert_eq!(masks.tensor(0), &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
        // -0.5 * mean gradient: mean of index 2 is -3 → 1.5; index 5: 2 → -1.0.
        assert_eq!(params[2], 1.5);
        assert_eq!(params[5], -1.0);
        assert_eq!(params[0], 0.5);
        let n = grow_by_gradient(&mut params, &mut masks, &acc, 1.0, GrowInit::Zero);
        assert_eq!(n, 3);
        assert_eq!(masks.density(), 1.0);
        assert_eq!(params[1], 0.0);
    }
    #[test]
    fn block_growth_activates_the_largest_gradient_tiles_whole() {
        let mut l = ParamLayout::new();
        l.push("w", &[2, 6]);
        let mut masks = MaskSet::weights(&l, true);
        // The first 1x2 tile is active; the others are dormant.
        masks
            .tensor_mut(0)
            .copy_from_slice(&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let mut params = vec![0.5; 12];
        let mut acc = GradientAccumulator::new(12);
        // Tile mean squares: (2,3): 0.01, (4,5): 4, (6,7): 25, (8,9): 0.5, (10,11): 12.5.
        acc.add(&[9.0, 9.0, 0.1, 0.1, 2.0, 2.0, 5.0, -5.0, 1.0, 0.0, 0.0, 5.0]);
        let block = BlockShape { rows: 1, cols: 2 };
        // 10 dormant; 30% → 3 entries → two tiles (4 entries): (6,7) then (10,11).
        let n = grow_by_gradient_blocks(&mut params, &mut masks, &acc, 0.3, GrowInit::Zero, block);
        assert_eq!(n, 4);
        assert_eq!(
            masks.tensor(0),
            &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
        );
        assert_eq!(&params[6..8], &[0.0, 0.0]);
        assert_eq!(params[0], 0.5);
    }
}
