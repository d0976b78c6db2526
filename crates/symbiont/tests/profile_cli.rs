//! End-to-end tests of `symbiont profile`, `frontier` and `plot` on the real binary, with the
//! fake engine and with external commands (tiny shell scripts), so they run in seconds.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "symbiont-profile-cli-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command expected to fail with exit code 2; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.lines().any(|l| l.starts_with("error: ")) && !err.contains("panicked"),
        "{err}"
    );
    err
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn frontier_json(table: &Path) -> Value {
    let out = ok(&["frontier", table.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sizes(frontier: &Value) -> Vec<u64> {
    frontier["frontier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hidden"].as_u64().unwrap())
        .collect()
}

#[test]
fn profile_frontier_and_plot_with_the_fake_engine() {
    let d = tmpdir("fake");
    let t = d.join("t.json");
    let ts = t.to_str().unwrap();
    ok(&[
        "profile",
        "--engine",
        "fake:steps:width=128",
        "--hidden",
        "32:1024:16",
        "--out",
        ts,
        "--no-progress",
    ]);
    let table = json_file(&t);
    assert_eq!(table["format"], "symbiont-latency-table");
    assert_eq!(table["complete"], true);
    assert_eq!(table["targets"][0]["points"].as_array().unwrap().len(), 63);
    let f = frontier_json(&t);
    assert_eq!(sizes(&f), (1..=8).map(|k| 128 * k).collect::<Vec<u64>>());
    for p in f["frontier"].as_array().unwrap() {
        let want = 0.5 + (p["hidden"].as_f64().unwrap() / 128.0).ceil();
        assert_eq!(p["median_ms"].as_f64().unwrap(), want);
        assert_eq!(p["verified"], true);
    }
    assert_eq!(f["curves"][0]["plateaus"].as_array().unwrap().len(), 8);
    assert!(f["curves"][0]["hysteresis"]["strength"].as_f64().unwrap() <= 1.0);
    let text = String::from_utf8(ok(&["frontier", ts, "--budget-ms", "3", "--snap", "208"]).stdout)
        .unwrap();
    assert!(
        text.contains("best under 3 ms: 256") && text.contains("snap(208) = 256"),
        "{text}"
    );
    let svg = d.join("p.svg");
    ok(&[
        "plot",
        ts,
        ts,
        "--out",
        svg.to_str().unwrap(),
        "--title",
        "two copies",
    ]);
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("two copies"));
}

#[test]
fn the_command_engine_passes_placeholders_and_environment() {
    let d = tmpdir("command");
    let t = d.join("t.json");
    // Latency (h mod 64) + h/8: non-monotonic with its frontier at the multiples of 64.
    let cmd = r#"echo "{\"samples_ms\": [$(( $SYMBIONT_HIDDEN % 64 + {hidden} / 8 ))], \"threads\": {threads}}""#;
    ok(&[
        "--threads",
        "3",
        "profile",
        "--engine",
        "command",
        "--command",
        cmd,
        "--hidden",
        "16:256:16",
        "--label",
        "shell",
        "--engine-version",
        "sh 1",
        "--device-name",
        "toaster",
        "--out",
        t.to_str().unwrap(),
    ]);
    let table = json_file(&t);
    let target = &table["targets"][0];
    assert_eq!(
        (target["label"].as_str(), target["device"].as_str()),
        (Some("shell"), Some("toaster"))
    );
    assert_eq!(target["engine"]["details"]["command"], cmd);
    let f = frontier_json(&t);
    assert_eq!(sizes(&f), vec![64, 128, 192, 256]);
    let p = &f["frontier"][0];
    assert_eq!(
        (
            p["median_ms"].as_f64(),
            p["threads"].as_u64(),
            p["input"].as_u64()
        ),
        (Some(8.0), Some(3), Some(64))
    );
    let h = &f["curves"][0]["hysteresis"];
    // 48 takes 54 ms, 64 takes 8 ms: the largest ratio of a smaller size over a larger one.
    assert_eq!(
        (h["smaller"].as_u64(), h["larger"].as_u64()),
        (Some(48), Some(64))
    );
    assert_eq!(h["strength"].as_f64(), Some(54.0 / 8.0));
}

#[test]
fn a_persistent_command_answers_one_line_per_configuration() {
    let d = tmpdir("persistent");
    let t = d.join("t.json");
    // Latency = the hidden size read from the request; a log line in between is skipped.
    let script = r#"while read -r line; do
        h=$(echo "$line" | sed 's/.*"hidden":\([0-9]*\).*/\1/')
        echo "loaded model $h"
        echo "{\"samples_ms\": [$h]}"
    done"#;
    let ts = t.to_str().unwrap();
    ok(&[
        "profile",
        "--engine",
        "command",
        "--persistent",
        "--command",
        script,
        "--hidden",
        "16:64:16",
        "--out",
        ts,
    ]);
    let f = frontier_json(&t);
    assert_eq!(sizes(&f), vec![16, 32, 48, 64]);
    assert_eq!(f["frontier"][3]["median_ms"].as_f64(), Some(64.0));
    assert_eq!(
        json_file(&t)["targets"][0]["engine"]["details"]["mode"],
        "persistent"
    );
    let err = fails(&[
        "profile",
        "--engine",
        "command",
        "--persistent",
        "--command",
        "x {hidden}",
        "--hidden",
        "8",
        "--out",
        ts,
    ]);
    assert!(err.contains("takes no placeholders"), "{err}");
}

#[test]
fn a_failing_command_is_reported_and_the_partial_table_kept() {
    let d = tmpdir("failing");
    let t = d.join("t.json");
    let cmd = r#"if [ {hidden} -ge 96 ]; then echo "no memory for {hidden}" >&2; exit 3; fi; echo '{"median_ms": 1}'"#;
    let err = fails(&[
        "profile",
        "--engine",
        "command",
        "--command",
        cmd,
        "--hidden",
        "32:128:32",
        "--passes",
        "1",
        "--out",
        t.to_str().unwrap(),
    ]);
    assert!(
        err.contains("exit status: 3")
            && err.contains("no memory for ")
            && err.contains(t.to_str().unwrap()),
        "{err}"
    );
    let table = json_file(&t);
    assert_eq!(table["complete"], false);
    assert!(table["incomplete_reason"]
        .as_str()
        .unwrap()
        .contains("engine failed"));
    let printed = fails(&[
        "profile",
        "--engine",
        "command",
        "--command",
        "echo 3 ms",
        "--hidden",
        "8",
        "--out",
        t.to_str().unwrap(),
    ]);
    assert!(printed.contains("printed no result line"), "{printed}");
}

#[test]
fn ctrl_c_writes_the_partial_table_and_exits_130() {
    let d = tmpdir("ctrlc");
    let t = d.join("t.json");
    let child = bin()
        .args([
            "profile",
            "--engine",
            "fake:linear:base=1:slope=0:sleep",
            "--hidden",
            "16:4096:16",
            "--out",
        ])
        .arg(&t)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let table = json_file(&t);
    assert_eq!(table["complete"], false);
    assert!(table["incomplete_reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    let n = table["targets"][0]["points"].as_array().unwrap().len();
    assert!(n > 0 && n < 256, "{n} points measured");
}

#[test]
fn tables_merge_export_and_compare() {
    let d = tmpdir("merge");
    let (a, b, c) = (d.join("a.json"), d.join("b.json"), d.join("c.json"));
    for (path, label) in [(&a, "first"), (&b, "second")] {
        ok(&[
            "profile",
            "--engine",
            "fake:saw",
            "--hidden",
            "64:512:64",
            "--label",
            label,
            "--out",
            path.to_str().unwrap(),
        ]);
    }
    let (sa, sb, sc) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c.to_str().unwrap(),
    );
    let csv = d.join("c.csv");
    ok(&[
        "profile",
        "--merge",
        sa,
        "--merge",
        sb,
        "--out",
        sc,
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(json_file(&c)["targets"].as_array().unwrap().len(), 2);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 16);
    assert!(rows.starts_with("label,engine,"));
    let f = frontier_json(&csv);
    assert_eq!(f["curves"].as_array().unwrap().len(), 2);
    let err = fails(&["profile", "--merge", sa, "--merge", sa, "--out", sc]);
    assert!(err.contains("both tables"), "{err}");
    ok(&[
        "profile",
        "--merge",
        sa,
        "--merge",
        sa,
        "--on-duplicate",
        "keep-last",
        "--out",
        sc,
    ]);
    let out = ok(&["frontier", sa, "--compare", sb, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["comparison"]["agreement"], 1.0);
}

#[test]
fn bad_input_gives_errors_not_panics() {
    let d = tmpdir("errors");
    let t = d.join("t.json");
    let ts = t.to_str().unwrap();
    assert!(fails(&[
        "profile",
        "--engine",
        "fake:steps",
        "--hidden",
        "64:32:16",
        "--out",
        ts
    ])
    .contains("invalid --hidden `64:32:16`"));
    assert!(
        fails(&["profile", "--engine", "gpu", "--hidden", "64", "--out", ts])
            .contains("unknown engine `gpu`")
    );
    assert!(
        fails(&["profile", "--engine", "command", "--hidden", "64", "--out", ts])
            .contains("needs --command")
    );
    assert!(fails(&[
        "profile",
        "--engine",
        "command",
        "--command",
        "x {hiden}",
        "--hidden",
        "64",
        "--out",
        ts
    ])
    .contains("unknown placeholder {hiden}"));
    assert!(fails(&[
        "profile",
        "--engine",
        "fake:steps",
        "--hidden",
        "64",
        "--density",
        "0,1",
        "--out",
        ts
    ])
    .contains("--density"));
    assert!(fails(&["profile", "--hidden", "64", "--out", ts]).contains("needs --engine"));
    assert!(fails(&[
        "--threads",
        "2",
        "profile",
        "--engine",
        "fake:steps",
        "--hidden",
        "64",
        "--thread-counts",
        "1,2",
        "--out",
        ts
    ])
    .contains("either --threads or --thread-counts"));
    let missing = d.join("missing.json");
    assert!(fails(&["frontier", missing.to_str().unwrap()]).contains("missing.json"));
    std::fs::write(&t, r#"{"format": "symbiont-latency-table", "version": 1, "targets": [{"label": "l", "engine": {"name": "e"}, "device": "d", "points": [{"hidden": 8}]}]}"#).unwrap();
    let err = fails(&["frontier", ts, "--json"]);
    assert!(
        err.contains("t.json: targets[0].points[0]: missing field"),
        "{err}"
    );
    ok(&[
        "profile",
        "--engine",
        "fake:steps",
        "--hidden",
        "64,128",
        "--out",
        ts,
    ]);
    assert!(
        fails(&["plot", ts, "--out", d.join("p.png").to_str().unwrap()])
            .contains("PNG is not supported")
    );
    assert!(fails(&["frontier", ts, "--axis", "width"]).contains("invalid axis"));
}

#[test]
fn every_flag_has_help() {
    for (cmd, flags) in [
        (
            "profile",
            &[
                "--engine",
                "--command",
                "--persistent",
                "--hidden",
                "--batch",
                "--seq",
                "--layers",
                "--density",
                "--thread-counts",
                "--out",
                "--budget",
                "--merge",
            ][..],
        ),
        (
            "frontier",
            &["--json", "--tolerance", "--noise-sigmas", "--compare"][..],
        ),
        ("plot", &["--out", "--y-scale", "--no-frontier"][..]),
    ] {
        let help = String::from_utf8(ok(&[cmd, "--help"]).stdout).unwrap();
        for f in flags {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(f))
                .unwrap_or_else(|| panic!("{cmd} {f}"));
            let has_text = line
                .trim_start()
                .split("  ")
                .filter(|s| !s.trim().is_empty())
                .count()
                > 1
                || help
                    .lines()
                    .skip_while(|l| l != &line)
                    .nth(1)
                    .is_some_and(|l| !l.trim().is_empty() && !l.trim_start().starts_with('-'));
            assert!(has_text, "{cmd} {f} has no help text");
        }
    }
}

#[test]
fn the_speech_engine_profiles_a_deepspeech_model() {
    let d = tmpdir("speech");
    let table = d.join("speech.json");
    ok(&[
        "--threads",
        "1",
        "profile",
        "--engine",
        "cpu-speech",
        "--hidden",
        "8,16",
        "--layers",
        "1",
        "--seq",
        "40",
        "--density",
        "1,0.5",
        "--passes",
        "1",
        "--max-passes",
        "1",
        "--out",
        table.to_str().unwrap(),
    ]);
    let t = json_file(&table);
    let target = &t["targets"][0];
    assert_eq!(target["engine"]["name"], "cpu-speech");
    assert!(target["host"]["isa"].is_string(), "{target}");
    let points = target["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    for p in points {
        let ms = p["median_ms"].as_f64().unwrap();
        assert!(ms.is_finite() && ms > 0.0, "{p}");
        let want = if p["density"].as_f64() == Some(1.0) {
            "dense"
        } else {
            "auto"
        };
        assert_eq!(p["format"], want);
    }
    // Too few frames for the convolutions: exit 2 naming the length.
    let err = fails(&[
        "profile",
        "--engine",
        "cpu-speech",
        "--hidden",
        "8",
        "--seq",
        "4",
        "--out",
        d.join("short.json").to_str().unwrap(),
    ]);
    assert!(err.contains("seq 4"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
