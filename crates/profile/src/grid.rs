//! Sweep grids: `A:B:STEP` ranges and comma lists, and the cartesian product of every axis.

use crate::{Point, ProfileError};

/// Most configurations one sweep may hold: beyond this a typo (a step of 1 instead of 16) is
/// more likely than intent.
pub const MAX_POINTS: usize = 100_000;

/// Parses integers: a comma-separated list of numbers and inclusive ranges `A:B:STEP`
/// (`A:B` steps by 1), e.g. "32:2048:16" (127 values) or "1,2,4" or "32:128:32,512".
/// Values keep their order of appearance; duplicates are dropped.
pub fn parse_sizes(flag: &str, text: &str) -> Result<Vec<usize>, ProfileError> {
    let mut out: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in items(flag, text)? {
        let nums: Vec<&str> = part.split(':').collect();
        let num = |s: &str| -> Result<usize, ProfileError> {
            s.trim()
                .parse::<usize>()
                .map_err(|_| ProfileError::spec(flag, text, format!("`{s}` is not a whole number")))
        };
        let vals: Vec<usize> = match nums.as_slice() {
            [v] => vec![num(v)?],
            [a, b] | [a, b, _] => {
                let (a, b) = (num(a)?, num(b)?);
                let step = if nums.len() == 3 { num(nums[2])? } else { 1 };
                if step == 0 {
                    return Err(ProfileError::spec(
                        flag,
                        text,
                        "a range step must be positive",
                    ));
                }
                if b < a {
                    return Err(ProfileError::spec(
                        flag,
                        text,
                        format!("range {part} ends below its start"),
                    ));
                }
                if (b - a) / step >= MAX_POINTS {
                    return Err(ProfileError::spec(
                        flag,
                        text,
                        format!("range {part} has more than {MAX_POINTS} values"),
                    ));
                }
                (a..=b).step_by(step).collect()
            }
            _ => {
                return Err(ProfileError::spec(
                    flag,
                    text,
                    format!("`{part}` is not N or A:B:STEP"),
                ))
            }
        };
        add_unique(&mut out, &mut seen, vals, |v| *v, flag, text)?;
    }
    Ok(out)
}

/// Appends the values not seen yet, in order. A set, not a scan of `out`: a list of ranges at
/// the limit took seconds per range with the scan (found reviewing the flow config reader). The
/// values of all items together are limited like those of one range.
fn add_unique<T, K: std::hash::Hash + Eq>(
    out: &mut Vec<T>,
    seen: &mut std::collections::HashSet<K>,
    vals: Vec<T>,
    key: impl Fn(&T) -> K,
    flag: &str,
    text: &str,
) -> Result<(), ProfileError> {
    for v in vals {
        if seen.insert(key(&v)) {
            out.push(v);
        }
    }
    if out.len() > MAX_POINTS {
        return Err(ProfileError::spec(
            flag,
            text,
            format!("the list has more than {MAX_POINTS} values"),
        ));
    }
    Ok(())
}

/// Parses real numbers, e.g. densities: "1.0,0.5,0.25" or "0.1:1.0:0.1". Range values are
/// A + i·STEP rounded to 12 decimals, so 0.1:1.0:0.1 ends at exactly 1.
pub fn parse_reals(flag: &str, text: &str) -> Result<Vec<f64>, ProfileError> {
    let mut out: Vec<f64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in items(flag, text)? {
        let nums: Vec<&str> = part.split(':').collect();
        let num = |s: &str| -> Result<f64, ProfileError> {
            match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(ProfileError::spec(
                    flag,
                    text,
                    format!("`{s}` is not a finite number"),
                )),
            }
        };
        let vals = match nums.as_slice() {
            [v] => vec![num(v)?],
            [a, b, s] => {
                let (a, b, s) = (num(a)?, num(b)?, num(s)?);
                if s <= 0.0 || b < a {
                    return Err(ProfileError::spec(
                        flag,
                        text,
                        format!("range {part} needs A <= B and STEP > 0"),
                    ));
                }
                let n = ((b - a) / s + 1e-9).floor() as usize;
                if n >= MAX_POINTS {
                    return Err(ProfileError::spec(
                        flag,
                        text,
                        format!("range {part} has too many values"),
                    ));
                }
                (0..=n)
                    .map(|i| ((a + i as f64 * s) * 1e12).round() / 1e12)
                    .collect()
            }
            _ => {
                return Err(ProfileError::spec(
                    flag,
                    text,
                    format!("`{part}` is not X or A:B:STEP"),
                ))
            }
        };
        // Keyed by bits with -0 as 0: the values are finite, so this is `==`.
        add_unique(
            &mut out,
            &mut seen,
            vals,
            |v| (v + 0.0).to_bits(),
            flag,
            text,
        )?;
    }
    Ok(out)
}

fn items<'a>(flag: &str, text: &'a str) -> Result<Vec<&'a str>, ProfileError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ProfileError::spec(flag, text, "empty list item"));
    }
    Ok(parts)
}

/// A size that is either tied to the hidden size of each point or one of given values.
#[derive(Clone, Debug, PartialEq)]
pub enum Sizes {
    SameAsHidden,
    Values(Vec<usize>),
}

impl Sizes {
    /// "hidden" (or "same") ties the size to the hidden size; otherwise a size list.
    pub fn parse(flag: &str, text: &str) -> Result<Sizes, ProfileError> {
        match text.trim() {
            "hidden" | "same" => Ok(Sizes::SameAsHidden),
            _ => Ok(Sizes::Values(parse_sizes(flag, text)?)),
        }
    }

    fn resolve(&self, hidden: usize) -> Vec<usize> {
        match self {
            Sizes::SameAsHidden => vec![hidden],
            Sizes::Values(v) => v.clone(),
        }
    }
}

/// Every axis of a sweep. `points` is their cartesian product.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub hidden: Vec<usize>,
    pub input: Sizes,
    pub gate_width: Sizes,
    pub layers: Vec<usize>,
    pub batch: Vec<usize>,
    pub seq: Vec<usize>,
    pub threads: Vec<usize>,
    pub dtype: Vec<String>,
    pub density: Vec<f64>,
    /// `None`: "dense" for density 1, "auto" below.
    pub format: Option<Vec<String>>,
}

impl Grid {
    /// The method's reference grid over the given hidden sizes: input tied to hidden, plain
    /// LSTM, 1 layer, batch 1, 35 steps, 1 thread, dense f32.
    pub fn over_hidden(hidden: Vec<usize>) -> Grid {
        Grid {
            hidden,
            input: Sizes::SameAsHidden,
            gate_width: Sizes::Values(vec![0]),
            layers: vec![1],
            batch: vec![1],
            seq: vec![35],
            threads: vec![1],
            dtype: vec!["f32".into()],
            density: vec![1.0],
            format: None,
        }
    }

    /// All configurations, validated (positive sizes, density in (0, 1]).
    pub fn points(&self) -> Result<Vec<Point>, ProfileError> {
        let positive = |flag: &str, v: &[usize]| -> Result<(), ProfileError> {
            if v.is_empty() || v.contains(&0) {
                let list: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                return Err(ProfileError::spec(
                    flag,
                    &list.join(","),
                    "needs at least one value, all positive",
                ));
            }
            Ok(())
        };
        positive("--hidden", &self.hidden)?;
        positive("--layers", &self.layers)?;
        positive("--batch", &self.batch)?;
        positive("--seq", &self.seq)?;
        positive("--threads", &self.threads)?;
        if let Sizes::Values(v) = &self.input {
            positive("--input", v)?;
        }
        if let Some(d) = self.density.iter().find(|d| !(**d > 0.0 && **d <= 1.0)) {
            return Err(ProfileError::spec(
                "--density",
                &d.to_string(),
                "densities lie in (0, 1]",
            ));
        }
        if self.density.is_empty() || self.dtype.is_empty() {
            return Err(ProfileError::spec(
                "--density/--dtype",
                "",
                "needs at least one value",
            ));
        }
        let gw_empty = matches!(&self.gate_width, Sizes::Values(v) if v.is_empty());
        let fmt_empty = matches!(&self.format, Some(f) if f.is_empty());
        if gw_empty || fmt_empty {
            return Err(ProfileError::spec(
                "--gate-width/--format",
                "",
                "needs at least one value",
            ));
        }
        let total = [
            &self.hidden,
            &self.layers,
            &self.batch,
            &self.seq,
            &self.threads,
        ]
        .iter()
        .map(|v| v.len())
        .chain([
            self.dtype.len(),
            self.density.len(),
            self.format.as_ref().map_or(1, Vec::len),
        ])
        .chain([&self.input, &self.gate_width].iter().map(|s| match s {
            Sizes::SameAsHidden => 1,
            Sizes::Values(v) => v.len(),
        }))
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
        if total > MAX_POINTS {
            return Err(ProfileError::spec(
                "grid",
                &total.to_string(),
                format!("more than {MAX_POINTS} configurations"),
            ));
        }
        let mut out = Vec::with_capacity(total);
        for &density in &self.density {
            let formats = match &self.format {
                Some(f) => f.clone(),
                None if density >= 1.0 => vec!["dense".to_string()],
                None => vec!["auto".to_string()],
            };
            for format in &formats {
                for dtype in &self.dtype {
                    for &threads in &self.threads {
                        for &layers in &self.layers {
                            for &batch in &self.batch {
                                for &seq in &self.seq {
                                    for &hidden in &self.hidden {
                                        for input in self.input.resolve(hidden) {
                                            for gate_width in self.gate_width.resolve(hidden) {
                                                out.push(Point {
                                                    hidden,
                                                    input,
                                                    gate_width,
                                                    layers,
                                                    batch,
                                                    seq,
                                                    threads,
                                                    dtype: dtype.clone(),
                                                    density,
                                                    format: format.clone(),
                                                });
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acceptance_range_has_127_sizes() {
        let v = parse_sizes("--hidden", "32:2048:16").unwrap();
        assert_eq!(v.len(), 127);
        assert_eq!((v[0], v[126]), (32, 2048));
        assert_eq!(
            parse_sizes("--hidden", "32:128:32, 512,64").unwrap(),
            vec![32, 64, 96, 128, 512]
        );
        assert_eq!(parse_sizes("--hidden", "5:7").unwrap(), vec![5, 6, 7]);
    }

    #[test]
    fn bad_specs_name_the_flag_and_the_reason() {
        for bad in ["", "32:16:8", "32:64:0", "a", "1:2:3:4", "1,,2", "-3"] {
            let e = parse_sizes("--hidden", bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid --hidden"), "{bad}: {e}");
        }
        assert!(parse_reals("--density", "0.5,nan").is_err());
    }

    #[test]
    fn real_ranges_end_exactly() {
        let v = parse_reals("--density", "0.1:1.0:0.1").unwrap();
        assert_eq!(v.len(), 10);
        assert_eq!((v[0], v[2], v[9]), (0.1, 0.3, 1.0));
    }

    #[test]
    fn grid_is_the_product_with_tied_input_and_default_formats() {
        let mut g = Grid::over_hidden(vec![64, 128]);
        g.density = vec![1.0, 0.5];
        g.threads = vec![1, 2];
        let pts = g.points().unwrap();
        assert_eq!(pts.len(), 8);
        assert!(pts.iter().all(|p| p.input == p.hidden));
        assert_eq!(pts.iter().filter(|p| p.format == "auto").count(), 4);
        assert!(pts
            .iter()
            .all(|p| (p.format == "dense") == (p.density == 1.0)));
        g.density = vec![1.5];
        assert!(g.points().unwrap_err().to_string().contains("--density"));
    }
}
