//! `Axis`: the dimension a curve runs along, and grouping configurations into curves.

use crate::{Point, ProfileError};
use std::collections::HashMap;

/// A numeric field of `Point` that a curve can run along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    Hidden,
    Input,
    GateWidth,
    Layers,
    Batch,
    Seq,
    Threads,
    Density,
}

impl Axis {
    pub const ALL: [Axis; 8] = [
        Axis::Hidden,
        Axis::Input,
        Axis::GateWidth,
        Axis::Layers,
        Axis::Batch,
        Axis::Seq,
        Axis::Threads,
        Axis::Density,
    ];

    /// The field name, as in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Hidden => "hidden",
            Axis::Input => "input",
            Axis::GateWidth => "gate_width",
            Axis::Layers => "layers",
            Axis::Batch => "batch",
            Axis::Seq => "seq",
            Axis::Threads => "threads",
            Axis::Density => "density",
        }
    }

    /// Parses a field name ("gate-width" is accepted for "gate_width").
    pub fn parse(text: &str) -> Result<Axis, ProfileError> {
        let norm = text.trim().replace('-', "_");
        Axis::ALL
            .into_iter()
            .find(|a| a.name() == norm)
            .ok_or_else(|| {
                let names: Vec<_> = Axis::ALL.iter().map(|a| a.name()).collect();
                ProfileError::spec(
                    "axis",
                    text,
                    format!("expected one of {}", names.join(", ")),
                )
            })
    }

    /// The value of this field in `p`.
    pub fn get(self, p: &Point) -> f64 {
        match self {
            Axis::Hidden => p.hidden as f64,
            Axis::Input => p.input as f64,
            Axis::GateWidth => p.gate_width as f64,
            Axis::Layers => p.layers as f64,
            Axis::Batch => p.batch as f64,
            Axis::Seq => p.seq as f64,
            Axis::Threads => p.threads as f64,
            Axis::Density => p.density,
        }
    }

    /// `p` moved to `value` along this axis. Moving along `hidden` carries the input size and
    /// the gate width with it when they equal the hidden size in `p` (they are "tied" to it, as
    /// the CLI's default input size is).
    pub fn with(self, p: &Point, value: f64) -> Point {
        let mut q = p.clone();
        let v = value.round().max(0.0) as usize;
        match self {
            Axis::Hidden => {
                if p.input == p.hidden {
                    q.input = v;
                }
                if p.gate_width == p.hidden {
                    q.gate_width = v;
                }
                q.hidden = v;
            }
            Axis::Input => q.input = v,
            Axis::GateWidth => q.gate_width = v,
            Axis::Layers => q.layers = v,
            Axis::Batch => q.batch = v,
            Axis::Seq => q.seq = v,
            Axis::Threads => q.threads = v,
            Axis::Density => q.density = value,
        }
        q
    }
}

/// Splits configurations into curves along `axis`: each curve holds the indices of points that
/// agree on every other field, sorted by the axis value. Along `hidden`, an input size (or gate
/// width) equal to the hidden size counts as tied to it: such points form one curve, and a
/// point whose input merely happens to equal its hidden size also belongs to the fixed-input
/// curve of that value (it is the same configuration). Curves come in order of their first point.
pub fn group_curves(points: &[Point], axis: Axis) -> Vec<Vec<usize>> {
    let mut groups = group_by(points, 0..points.len(), |p| {
        let mut k = axis.with(p, 0.0);
        if axis == Axis::Hidden {
            k.input = 0;
            k.gate_width = 0;
        }
        format!("{k:?}")
    });
    if axis == Axis::Hidden {
        groups = split_untied(points, groups, |p| p.input);
        groups = split_untied(points, groups, |p| p.gate_width);
    }
    for g in &mut groups {
        g.sort_by(|&a, &b| axis.get(&points[a]).total_cmp(&axis.get(&points[b])));
    }
    groups
}

fn split_untied(
    points: &[Point],
    groups: Vec<Vec<usize>>,
    field: impl Fn(&Point) -> usize,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for g in groups {
        let tied = |i: &usize| field(&points[*i]) == points[*i].hidden;
        let untied: Vec<usize> = g.iter().copied().filter(|i| !tied(i)).collect();
        if untied.is_empty() {
            out.push(g);
            continue;
        }
        let fixed: Vec<Vec<usize>> = group_by(points, untied, |p| field(p).to_string())
            .into_iter()
            .map(|c| {
                let v = field(&points[c[0]]);
                g.iter()
                    .copied()
                    .filter(|&i| field(&points[i]) == v)
                    .collect()
            })
            .collect();
        let tied_curve: Vec<usize> = g.iter().copied().filter(tied).collect();
        // A tied curve exists only if some tied point is not just a member of a fixed curve.
        if tied_curve
            .iter()
            .any(|i| !fixed.iter().any(|c| c.contains(i)))
        {
            out.push(tied_curve);
        }
        out.extend(fixed);
    }
    out
}

fn group_by(
    points: &[Point],
    idx: impl IntoIterator<Item = usize>,
    key: impl Fn(&Point) -> String,
) -> Vec<Vec<usize>> {
    let mut slot: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in idx {
        let k = key(&points[i]);
        let s = *slot.entry(k).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[s].push(i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tied_input_stays_one_curve_and_fixed_input_splits_by_value() {
        let tied: Vec<Point> = [64, 128, 256].iter().map(|&h| Point::lstm(h)).collect();
        let fixed = |h: usize| Point {
            input: 128,
            ..Point::lstm(h)
        };
        // Only a fixed-input sweep: the point whose input equals its width is not a curve.
        let only_fixed = vec![fixed(64), fixed(128), fixed(256)];
        assert_eq!(group_curves(&only_fixed, Axis::Hidden), vec![vec![0, 1, 2]]);
        // Both sweeps merged: hidden=128 belongs to both curves.
        let mut both = tied.clone();
        both.extend([fixed(64), fixed(256)]);
        assert_eq!(
            group_curves(&both, Axis::Hidden),
            vec![vec![0, 1, 2], vec![3, 1, 4]]
        );
        assert_eq!(group_curves(&tied, Axis::Hidden), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn other_fields_split_curves_and_points_sort_by_axis() {
        let pts = vec![
            Point {
                density: 0.5,
                ..Point::lstm(256)
            },
            Point::lstm(128),
            Point {
                density: 0.5,
                ..Point::lstm(64)
            },
        ];
        assert_eq!(group_curves(&pts, Axis::Hidden), vec![vec![2, 0], vec![1]]);
        assert_eq!(group_curves(&pts, Axis::Density).len(), 3);
    }

    #[test]
    fn moving_along_hidden_carries_tied_fields_only() {
        let p = Point {
            gate_width: 32,
            ..Point::lstm(64)
        };
        let q = Axis::Hidden.with(&p, 128.0);
        assert_eq!((q.hidden, q.input, q.gate_width), (128, 128, 32));
        assert_eq!(Axis::parse("gate-width").unwrap(), Axis::GateWidth);
        assert!(Axis::parse("width").is_err());
    }
}
