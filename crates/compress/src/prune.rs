//! Magnitude pruning: deactivate the active weights of smallest |w|, per tensor or globally
//! over the selected tensors, down to a target density.

use crate::blocks::BlockShape;
use crate::MaskSet;

/// Where the target density applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every selected tensor keeps the same fraction of its weights.
    PerTensor,
    /// One threshold over all selected tensors (layers with larger weights keep more).
    Global,
}

/// Prunes so that at most `density` of each selected tensor's entries (or of all of them, for
/// `Scope::Global`) stay active; never revives anything. Pruned weights are set to zero in
/// `params`. Ties at the threshold are broken by position, so the result is deterministic.
/// Returns the number of weights pruned.
pub fn magnitude_prune(
    params: &mut [f32],
    masks: &mut MaskSet,
    density: f64,
    scope: Scope,
) -> usize {
    assert!(
        (0.0..=1.0).contains(&density),
        "density {density} out of [0, 1]"
    );
    let selected: Vec<usize> = masks.selected().collect();
    let mut pruned = 0;
    match scope {
        Scope::PerTensor => {
            for t in selected {
                let range = masks.layout().range(t);
                let keep = (density * range.len() as f64).round() as usize;
                let mut cands: Vec<(f32, usize)> = active_entries(params, masks, t);
                pruned += prune_smallest(params, masks, &mut cands, keep);
            }
        }
        Scope::Global => {
            let total: usize = selected.iter().map(|&t| masks.layout().get(t).len()).sum();
            let keep = (density * total as f64).round() as usize;
            let mut cands: Vec<(f32, usize)> = selected
                .iter()
                .flat_map(|&t| active_entries(params, masks, t))
                .collect();
            pruned += prune_smallest(params, masks, &mut cands, keep);
        }
    }
    pruned
}

/// [`magnitude_prune`] in whole tiles of `block`: the tiles with the smallest mean square of
/// their active weights (over the tile's area) go first, until at most `density` of the entries stay active (the last tile
/// may take it up to one tile below the target). Partly active tiles (left by an unstructured
/// phase) count their active entries. With a 1x1 block this is exactly [`magnitude_prune`].
pub fn magnitude_prune_blocks(
    params: &mut [f32],
    masks: &mut MaskSet,
    density: f64,
    scope: Scope,
    block: BlockShape,
) -> usize {
    if block.is_unit() {
        return magnitude_prune(params, masks, density, scope);
    }
    assert!(
        (0.0..=1.0).contains(&density),
        "density {density} out of [0, 1]"
    );
    let selected: Vec<usize> = masks.selected().collect();
    let groups: Vec<Vec<usize>> = match scope {
        Scope::PerTensor => selected.iter().map(|&t| vec![t]).collect(),
        Scope::Global => vec![selected],
    };
    let mut pruned = 0;
    for tensors in groups {
        let total: usize = tensors.iter().map(|&t| masks.layout().get(t).len()).sum();
        let keep = (density * total as f64).round() as usize;
        // (mean square, tensor, tile, active entries) of every tile with an active entry.
        let mut tiles: Vec<(f64, usize, usize, usize)> = Vec::new();
        let mut active = 0;
        for &t in &tensors {
            let tiling = block.tiling_for(masks.layout().get(t));
            let (offset, m) = (masks.layout().get(t).offset, masks.tensor(t));
            for tile in 0..tiling.count() {
                let (mut norm, mut n) = (0f64, 0);
                for o in tiling.offsets(tile).filter(|&o| m[o] != 0.0) {
                    norm += (params[offset + o] as f64).powi(2);
                    n += 1;
                }
                if n > 0 {
                    // Mean square over the tile's area, so the cut tiles at the edges (and
                    // partly active ones) are not ranked low for being small.
                    tiles.push((norm / tiling.len(tile) as f64, t, tile, n));
                    active += n;
                }
            }
        }
        // Smallest norm first; position breaks ties.
        tiles.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        for (_, t, tile, n) in tiles {
            if active <= keep {
                break;
            }
            let tiling = block.tiling_for(masks.layout().get(t));
            let offset = masks.layout().get(t).offset;
            let m = masks.tensor_mut(t);
            for o in tiling.offsets(tile) {
                m[o] = 0.0;
                params[offset + o] = 0.0;
            }
            active -= n;
            pruned += n;
        }
    }
    pruned
}

/// (|w|, flat index) of the active entries of tensor `t`.
fn active_entries(params: &[f32], masks: &MaskSet, t: usize) -> Vec<(f32, usize)> {
    let range = masks.layout().range(t);
    let m = masks.tensor(t);
    range
        .clone()
        .zip(m)
        .filter(|(_, &mv)| mv != 0.0)
        .map(|(i, _)| (params[i].abs(), i))
        .collect()
}

fn prune_smallest(
    params: &mut [f32],
    masks: &mut MaskSet,
    cands: &mut [(f32, usize)],
    keep: usize,
) -> usize {
    if cands.len() <= keep {
        return 0;
    }
    let drop = cands.len() - keep;
    // Smallest magnitude first; position breaks ties.
    cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let layout = masks.layout().clone();
    for &(_, i) in &cands[..drop] {
        params[i] = 0.0;
        let (t, off) = locate(&layout, i);
        masks.tensor_mut(t)[off] = 0.0;
    }
    drop
}

/// Tensor index and offset inside it of flat index `i`.
pub(crate) fn locate(layout: &model::ParamLayout, i: usize) -> (usize, usize) {
    let t = layout
        .tensors()
        .iter()
        .position(|s| s.range().contains(&i))
        .expect("index inside the layout");
    (t, i - layout.get(t).offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ParamLayout;

    fn setup() -> (Vec<f32>, MaskSet) {
        let mut l = ParamLayout::new();
        l.push("a.weight", &[2, 5]);
        l.push("a.bias", &[2]);
        l.push("b.weight", &[2, 5]);
        let params: Vec<f32> = vec![
            0.1, -0.9, 0.3, -0.05, 0.7, 0.2, 0.0, -0.4, 0.6, 0.8, // a.weight
            0.01, 0.02, // a.bias (never masked)
            5.0, -4.0, 3.0, 2.0, 1.0, -6.0, 7.0, 8.0, 9.0, 10.0, // b.weight
        ];
        (params, MaskSet::weights(&l, true))
    }

    #[test]
    fn per_tensor_prunes_smallest_in_each_tensor() {
        let (mut p, mut m) = setup();
        let n = magnitude_prune(&mut p, &mut m, 0.5, Scope::PerTensor);
        assert_eq!(n, 10);
        // a.weight keeps its 5 largest |w|: 0.9, 0.7, 0.8, 0.6, 0.4.
        assert_eq!(
            &p[..10],
            &[0.0, -0.9, 0.0, 0.0, 0.7, 0.0, 0.0, -0.4, 0.6, 0.8]
        );
        assert_eq!(&p[10..12], &[0.01, 0.02]);
        assert_eq!(m.active(0), 5);
        assert_eq!(m.active(2), 5);
        // Pruning again to the same density does nothing; lower density prunes more.
        assert_eq!(magnitude_prune(&mut p, &mut m, 0.5, Scope::PerTensor), 0);
        assert_eq!(magnitude_prune(&mut p, &mut m, 0.2, Scope::PerTensor), 6);
    }

    #[test]
    fn block_pruning_removes_the_smallest_norm_tiles_whole() {
        let mut l = ParamLayout::new();
        l.push("w", &[4, 4]);
        #[rustfmt::skip]
        let mut p = vec![
            0.1, 0.1, 5.0, 5.0,
            0.1, 0.1, 5.0, 5.0,
            3.0, 3.0, 0.2, 0.2,
            3.0, 3.0, 0.2, 9.0,
        ];
        let mut m = MaskSet::weights(&l, true);
        let two = BlockShape { rows: 2, cols: 2 };
        // Tile mean squares: 0.01, 25, 9, 20.28. Half the weights go: the two smallest tiles,
        // though the 3.0s are larger than three of the kept weights (unstructured pruning would
        // keep them).
        let n = magnitude_prune_blocks(&mut p, &mut m, 0.5, Scope::PerTensor, two);
        assert_eq!(n, 8);
        #[rustfmt::skip]
        assert_eq!(m.tensor(0), &[
            0.0, 0.0, 1.0, 1.0,
            0.0, 0.0, 1.0, 1.0,
            0.0, 0.0, 1.0, 1.0,
            0.0, 0.0, 1.0, 1.0,
        ]);
        assert_eq!(p[8], 0.0);
        assert_eq!(p[15], 9.0, "a large weight in a kept tile stays");
    }

    #[test]
    fn block_pruning_stops_within_one_tile_of_the_target() {
        let mut l = ParamLayout::new();
        l.push("a.weight", &[8, 10]);
        l.push("b.weight", &[6, 6]);
        let block = BlockShape { rows: 2, cols: 4 };
        for scope in [Scope::PerTensor, Scope::Global] {
            let mut p: Vec<f32> = (0..116)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 10.0)
                .collect();
            let mut m = MaskSet::weights(&l, true);
            for density in [0.7, 0.4, 0.1] {
                magnitude_prune_blocks(&mut p, &mut m, density, scope, block);
                let total = (m.active(0) + m.active(1)) as f64;
                assert!(
                    total <= (density * 116.0).round() + 0.5,
                    "{scope:?} {density}: {total}"
                );
                assert!(
                    total > density * 116.0 - 2.0 * 8.0 - 1.0,
                    "{scope:?} {density}: {total}"
                );
                // Every tile is all on or all off, and pruned weights are zero.
                for t in 0..2 {
                    let tiling = block.tiling_for(m.layout().get(t));
                    for tile in 0..tiling.count() {
                        let on: Vec<f32> = tiling.offsets(tile).map(|o| m.tensor(t)[o]).collect();
                        assert!(on.iter().all(|&v| v == on[0]), "tile {tile} of {t}: {on:?}");
                    }
                }
                let off = m.layout().get(0).offset;
                for (o, &mv) in m.tensor(0).iter().enumerate() {
                    if mv == 0.0 {
                        assert_eq!(p[off + o], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn global_prunes_the_small_tensor_first() {
        let (mut p, mut m) = setup();
        magnitude_prune(&mut p, &mut m, 0.5, Scope::Global);
        assert_eq!(m.active(0), 0, "all of a.weight is smaller than b.weight");
        assert_eq!(m.active(2), 10);
        assert!(p[..10].iter().all(|&v| v == 0.0));
    }
}
