//! `FakeEngine`: a deterministic engine with known latency curves (steps, saw-tooth, linear,
//! quadratic, an explicit table) and optional seeded noise, for tests and demonstrations.

use crate::rng::{hash_str, Rng};
use crate::{Engine, EngineInfo, Point, Prepared, ProfileError};
use std::time::Duration;

/// The shape of a fake latency curve over the hidden size h (in ms).
#[derive(Clone, Debug, PartialEq)]
pub enum FakeCurve {
    /// `base + step·⌈h / width⌉`: plateaus (k·width, (k+1)·width], each `step` slower than the
    /// one before. Frontier: the multiples of `width` (and the largest size).
    Steps {
        width: usize,
        base_ms: f64,
        step_ms: f64,
    },
    /// `base + trend·h + ramp·(h mod period)`: latency climbs within each period and falls at
    /// every multiple of `period`, so the sizes just below a multiple are dominated.
    Saw {
        period: usize,
        base_ms: f64,
        trend_ms: f64,
        ramp_ms: f64,
    },
    /// `base + slope·h`: monotonic, every size is on the frontier.
    Linear { base_ms: f64, slope_ms: f64 },
    /// `base + coef·h²`: monotonic, like a memory-bound dense layer.
    Quadratic { base_ms: f64, coef_ms: f64 },
    /// Explicit `(hidden, ms)` pairs; other sizes are an error.
    Table(Vec<(usize, f64)>),
}

impl FakeCurve {
    /// Latency of hidden size `h`, or `None` where a `Table` has no entry.
    pub fn at(&self, h: usize) -> Option<f64> {
        let x = h as f64;
        Some(match self {
            FakeCurve::Steps {
                width,
                base_ms,
                step_ms,
            } => base_ms + step_ms * h.div_ceil(*width) as f64,
            FakeCurve::Saw {
                period,
                base_ms,
                trend_ms,
                ramp_ms,
            } => base_ms + trend_ms * x + ramp_ms * (h % period) as f64,
            FakeCurve::Linear { base_ms, slope_ms } => base_ms + slope_ms * x,
            FakeCurve::Quadratic { base_ms, coef_ms } => base_ms + coef_ms * x * x,
            FakeCurve::Table(t) => return t.iter().find(|(s, _)| *s == h).map(|(_, v)| *v),
        })
    }
}

/// An engine whose latency is `curve(hidden) · layers · seq/35 · (0.2 + 0.8·density)`, times
/// `1 + noise·N(0,1)` (clamped to stay positive) drawn from a generator seeded by the seed, the
/// configuration and the visit number — so a sweep with a fixed seed is fully reproducible.
#[derive(Clone, Debug)]
pub struct FakeEngine {
    pub curve: FakeCurve,
    /// Relative standard deviation of each sample; 0 = exact.
    pub noise: f64,
    pub seed: u64,
    /// Sleep for each sample's latency, so wall-clock budgets and Ctrl-C can be exercised.
    pub sleep: bool,
    /// Hidden sizes whose `prepare` fails, to exercise error handling.
    pub fail_hidden: Vec<usize>,
    visits: u64,
}

impl FakeEngine {
    pub fn new(curve: FakeCurve) -> FakeEngine {
        FakeEngine {
            curve,
            noise: 0.0,
            seed: 0,
            sleep: false,
            fail_hidden: Vec::new(),
            visits: 0,
        }
    }

    pub fn with_noise(mut self, noise: f64, seed: u64) -> FakeEngine {
        self.noise = noise;
        self.seed = seed;
        self
    }

    /// The exact (noise-free) latency of a configuration.
    pub fn latency_ms(&self, p: &Point) -> Option<f64> {
        let scale = p.layers as f64 * p.seq as f64 / 35.0 * (0.2 + 0.8 * p.density);
        self.curve.at(p.hidden).map(|v| v * scale)
    }

    /// Parses the CLI form `NAME[:key=value…]`: NAME is steps, saw, linear or quadratic; keys
    /// are noise (relative σ), seed, sleep (no value), fail (a hidden size whose prepare
    /// fails), and the curve's own numbers (width, period, base, step, trend, ramp, slope, coef).
    pub fn parse(spec: &str) -> Result<FakeEngine, ProfileError> {
        let bad = |why: String| ProfileError::spec("fake engine", spec, why);
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or("");
        let mut kv: Vec<(String, f64)> = Vec::new();
        let mut engine = FakeEngine::new(FakeCurve::Linear {
            base_ms: 0.0,
            slope_ms: 0.0,
        });
        for part in parts {
            if part == "sleep" {
                engine.sleep = true;
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not key=value")))?;
            let v: f64 = v
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(format!("`{v}` is not a non-negative number")))?;
            match k {
                "noise" => engine.noise = v,
                "seed" => engine.seed = v as u64,
                "fail" => engine.fail_hidden.push(v as usize),
                _ => kv.push((k.to_string(), v)),
            }
        }
        let mut take = |key: &str, default: f64| -> f64 {
            match kv.iter().position(|(k, _)| k == key) {
                Some(i) => kv.remove(i).1,
                None => default,
            }
        };
        engine.curve = match name {
            "steps" => FakeCurve::Steps {
                width: take("width", 128.0).max(1.0) as usize,
                base_ms: take("base", 0.5),
                step_ms: take("step", 1.0),
            },
            "saw" => FakeCurve::Saw {
                period: take("period", 256.0).max(1.0) as usize,
                base_ms: take("base", 0.5),
                trend_ms: take("trend", 0.01),
                ramp_ms: take("ramp", 0.02),
            },
            "linear" => FakeCurve::Linear {
                base_ms: take("base", 0.1),
                slope_ms: take("slope", 0.01),
            },
            "quadratic" => FakeCurve::Quadratic {
                base_ms: take("base", 0.1),
                coef_ms: take("coef", 3.6e-5),
            },
            _ => {
                return Err(bad(format!(
                    "unknown curve `{name}` (steps, saw, linear, quadratic)"
                )))
            }
        };
        if let Some((k, _)) = kv.first() {
            return Err(bad(format!("unknown key `{k}` for curve {name}")));
        }
        Ok(engine)
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> EngineInfo {
        let mut info = EngineInfo::new("fake", env!("CARGO_PKG_VERSION"));
        info.device = Some("fake".into());
        info.details
            .insert("curve".into(), format!("{:?}", self.curve));
        info.details.insert("noise".into(), self.noise.to_string());
        info.details.insert("seed".into(), self.seed.to_string());
        info
    }

    fn prepare(&mut self, point: &Point) -> Result<Box<dyn Prepared>, ProfileError> {
        if self.fail_hidden.contains(&point.hidden) {
            return Err(ProfileError::Engine(format!(
                "fake engine: configured to fail at {}",
                point.describe()
            )));
        }
        let ms = self.latency_ms(point).ok_or_else(|| {
            ProfileError::Engine(format!("fake engine: no latency for {}", point.describe()))
        })?;
        self.visits += 1;
        let seed = self.seed ^ hash_str(&point.describe()) ^ self.visits.wrapping_mul(0x9E37_79B9);
        Ok(Box::new(FakePrepared {
            ms,
            noise: self.noise,
            sleep: self.sleep,
            rng: Rng::new(seed),
        }))
    }
}

struct FakePrepared {
    ms: f64,
    noise: f64,
    sleep: bool,
    rng: Rng,
}

impl Prepared for FakePrepared {
    fn run(&mut self) -> Result<Vec<f64>, ProfileError> {
        let mut v = self.ms;
        if self.noise > 0.0 {
            v *= (1.0 + self.noise * self.rng.normal()).max(0.05);
        }
        if self.sleep {
            std::thread::sleep(Duration::from_secs_f64(v / 1e3));
        }
        Ok(vec![v])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_have_their_documented_values() {
        let s = FakeCurve::Steps {
            width: 128,
            base_ms: 0.5,
            step_ms: 1.0,
        };
        assert_eq!(
            (s.at(1), s.at(128), s.at(129)),
            (Some(1.5), Some(1.5), Some(2.5))
        );
        let w = FakeCurve::Saw {
            period: 100,
            base_ms: 1.0,
            trend_ms: 0.0,
            ramp_ms: 0.1,
        };
        assert!((w.at(99).unwrap() - 10.9).abs() < 1e-12);
        assert_eq!(w.at(100), Some(1.0));
        assert_eq!(FakeCurve::Table(vec![(3, 2.0)]).at(4), None);
    }

    #[test]
    fn parse_accepts_the_cli_form_and_rejects_typos() {
        let e = FakeEngine::parse("steps:width=64:noise=0.02:seed=7:sleep").unwrap();
        assert_eq!(
            e.curve,
            FakeCurve::Steps {
                width: 64,
                base_ms: 0.5,
                step_ms: 1.0
            }
        );
        assert_eq!((e.noise, e.seed, e.sleep), (0.02, 7, true));
        assert!(FakeEngine::parse("steps:widht=64").is_err());
        assert!(FakeEngine::parse("zigzag").is_err());
        assert!(FakeEngine::parse("saw:period=x").is_err());
    }

    #[test]
    fn noise_is_seeded_and_exact_without_it() {
        let p = Point::lstm(256);
        let run = |e: &mut FakeEngine| -> Vec<f64> {
            let mut prep = e.prepare(&p).unwrap();
            (0..5).flat_map(|_| prep.run().unwrap()).collect()
        };
        let mut a = FakeEngine::parse("linear:noise=0.1:seed=3").unwrap();
        let mut b = a.clone();
        assert_eq!(run(&mut a), run(&mut b));
        let v = run(&mut a);
        assert!(v.iter().any(|x| (x - v[0]).abs() > 1e-9));
        let mut exact = FakeEngine::parse("linear").unwrap();
        assert!(run(&mut exact).iter().all(|&x| x == 0.1 + 0.01 * 256.0));
    }
}
