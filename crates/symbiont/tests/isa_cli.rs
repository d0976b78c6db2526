//! ISA levels on the real binary: `SYMBIONT_ISA` refused for unknown levels and ones the CPU
//! lacks (exit 2, before any command runs), `symbiont isa` against the kernels crate's own
//! detection, and the `"isa"` / `"gemm_isa"` keys of bench, peak and profile tables under every
//! level this machine supports. No PTB data needed.

use kernels::isa::{self, Isa};
use serde_json::Value;
use std::process::{Command, Output};

/// The binary with `SYMBIONT_ISA` set to `level`, or removed with `None`.
fn bin(level: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_symbiont"));
    match level {
        Some(l) => cmd.env(isa::ENV, l),
        None => cmd.env_remove(isa::ENV),
    };
    cmd
}

fn run(level: Option<&str>, args: &[&str]) -> Output {
    bin(level)
        .args(args)
        .output()
        .expect("the symbiont binary runs")
}

fn stdout_ok(level: Option<&str>, args: &[&str]) -> String {
    let out = run(level, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{level:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(level: Option<&str>, args: &[&str]) -> Value {
    serde_json::from_str(&stdout_ok(level, args)).expect("stdout is JSON")
}

/// The levels this CPU supports, as the kernels crate detects them.
fn supported() -> Vec<&'static str> {
    isa::supported().iter().map(|l| l.name()).collect()
}

const TINY_BENCH: [&str; 16] = [
    "--threads",
    "1",
    "bench",
    "--layers",
    "1",
    "--hidden",
    "32",
    "--batch",
    "1",
    "--seq",
    "5",
    "--reps",
    "3",
    "--min-time",
    "0",
    "--json",
];

#[test]
fn unknown_or_unsupported_levels_exit_2_naming_the_variable() {
    let missing: Vec<&str> = isa::ALL
        .iter()
        .filter(|l| !l.supported())
        .map(|l| l.name())
        .collect();
    // x86 lacks neon, aarch64 the x86 levels: every machine has a level to refuse.
    assert!(!missing.is_empty());
    for (value, named) in
        std::iter::once(("bogus", "bogus")).chain(missing.iter().map(|m| (*m, *m)))
    {
        for args in [
            &["peak", "--hidden", "16"][..],
            &["isa", "--json"],
            &TINY_BENCH,
        ] {
            let out = run(Some(value), args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value} {args:?}: {err}");
            assert!(
                err.starts_with("error: ") && err.contains(isa::ENV) && err.contains(named),
                "{value} {args:?}: {err}"
            );
            assert!(out.stdout.is_empty(), "{value} {args:?}: nothing runs");
        }
    }
    // An empty value means unset.
    assert_eq!(
        json(Some(""), &["isa", "--json"])["active"],
        isa::detected().name()
    );
}

#[test]
fn isa_reports_what_the_kernels_crate_detects() {
    let r = json(None, &["isa", "--json"]);
    let names: Vec<&str> = r["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, supported());
    assert!(names.contains(&"portable"), "{r}");
    assert_eq!(r["detected"], isa::detected().name());
    assert_eq!(
        r["active"], r["detected"],
        "no SYMBIONT_ISA: the detected level"
    );
    assert_eq!(r["gemm_isa"], isa::gemm_level().name());
    // --supported: the same names, one per line, for scripts.
    let lines = stdout_ok(None, &["isa", "--supported"]);
    assert_eq!(lines.lines().collect::<Vec<_>>(), supported());
    // A forced level changes the active level only.
    for level in supported() {
        let f = json(Some(level), &["isa", "--json"]);
        assert_eq!(f["active"], level);
        assert_eq!(f["detected"], isa::detected().name());
        assert_eq!(f["supported"], r["supported"]);
        let text = stdout_ok(Some(level), &["isa"]);
        assert!(
            text.contains(&format!("active     {level} (SYMBIONT_ISA)")),
            "{text}"
        );
    }
}

#[test]
fn bench_reports_the_level_it_ran_at_under_every_supported_level() {
    for level in supported() {
        let r = json(Some(level), &TINY_BENCH);
        assert_eq!(r["isa"], level, "{r}");
        assert_eq!(r["gemm_isa"], isa::gemm_level().name());
        assert!(r["median_ms"].as_f64().unwrap() > 0.0);
    }
    let r = json(None, &TINY_BENCH);
    assert_eq!(r["isa"], isa::detected().name());
    // The text output names both levels on one line.
    let text = stdout_ok(Some("portable"), &TINY_BENCH[..15]);
    let want = format!(
        "ISA: hand kernels at portable (SYMBIONT_ISA), gemm crate at {}",
        isa::gemm_level()
    );
    assert!(text.lines().any(|l| l.trim() == want), "{text}");
}

#[test]
fn peak_compares_the_inference_kernel_with_the_gemm_crate() {
    let r = json(Some("portable"), &["peak", "--hidden", "16", "--json"]);
    assert_eq!(r["isa"], "portable");
    assert_eq!(r["gemm_isa"], isa::gemm_level().name());
    let rows = r["gemm"].as_array().unwrap();
    for (shape, m) in [
        ("infer_dense_b1", 1),
        ("gemm_b1", 1),
        ("infer_dense_b16", 16),
        ("gemm_b16", 16),
    ] {
        let row = rows
            .iter()
            .find(|row| row["shape"] == shape)
            .unwrap_or_else(|| panic!("no {shape} row: {r}"));
        // y (nb x 4H) += x (nb x H) · Wᵀ at H = 16.
        assert_eq!(
            (&row["hidden"], &row["m"], &row["n"], &row["k"]),
            (&16.into(), &m.into(), &64.into(), &16.into()),
            "{row}"
        );
        let (ms, gflops) = (
            row["median_ms"].as_f64().unwrap(),
            row["gflops"].as_f64().unwrap(),
        );
        assert!(ms > 0.0, "{row}");
        let expect = 2.0 * (m * 64 * 16) as f64 / (ms * 1e-3) / 1e9;
        assert!((gflops - expect).abs() <= 1e-9 * expect, "{row}");
    }
    let ratios = r["infer_vs_gemm"].as_array().unwrap();
    assert_eq!(ratios.len(), 2);
    for q in ratios {
        let ratio = q["infer_ms"].as_f64().unwrap() / q["gemm_ms"].as_f64().unwrap();
        assert!((q["infer_over_gemm"].as_f64().unwrap() - ratio).abs() < 1e-9 * ratio);
    }
    let text = stdout_ok(None, &["peak", "--hidden", "16"]);
    let want = format!(
        "ISA: hand kernels at {} (detected), gemm crate at {}",
        isa::detected(),
        isa::gemm_level()
    );
    assert!(text.lines().any(|l| l == want), "{text}");
    assert!(text.contains("infer_dense_b16") && text.contains("gemm_b16"));
}

#[test]
fn profile_tables_record_the_level_of_symbionts_engines_only() {
    let dir = std::env::temp_dir().join(format!("symbiont-isa-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("t.json");
    let quick = [
        "--hidden",
        "16:32:16",
        "--seq",
        "3",
        "--passes",
        "1",
        "--max-passes",
        "1",
        "--visit-ms",
        "1",
        "--min-runs",
        "1",
        "--no-verify",
        "--no-progress",
        "--out",
        table.to_str().unwrap(),
    ];
    let host = |level: Option<&str>, engine: &str| -> Value {
        let mut args = vec!["profile", "--engine", engine];
        args.extend(quick);
        stdout_ok(level, &args);
        let t: Value = serde_json::from_str(&std::fs::read_to_string(&table).unwrap()).unwrap();
        t["targets"][0]["host"].clone()
    };
    // The lowest level above portable this CPU has (portable where there is none).
    let forced = isa::supported()
        .into_iter()
        .find(|&l| l > Isa::Portable)
        .unwrap_or(Isa::Portable)
        .name();
    let h = host(Some(forced), "cpu-dense");
    assert_eq!(h["isa"], forced, "{h}");
    assert_eq!(h["gemm_isa"], isa::gemm_level().name(), "{h}");
    let h = host(None, "cpu-sparse");
    assert_eq!(h["isa"], isa::detected().name(), "{h}");
    // The fake engine runs none of symbiont's kernels: no level is recorded.
    let h = host(Some(forced), "fake:steps");
    assert!(h.get("isa").is_none() && h.get("gemm_isa").is_none(), "{h}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn isa_flags_have_help() {
    let help = stdout_ok(None, &["isa", "--help"]);
    for flag in ["--json", "--supported"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(flag)),
            "{flag}: {help}"
        );
    }
    // --json and --supported print different things: asking for both is a usage error.
    assert_eq!(
        run(None, &["isa", "--json", "--supported"]).status.code(),
        Some(2)
    );
}
