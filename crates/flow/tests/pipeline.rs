//! The whole flow on a small synthetic corpus in PTB format (no PTB needed): sizing from a
//! latency table with plateaus, the stages in order, the accuracy bar, the final model loading in
//! the inference engine, exact resume after interruptions, and config errors naming the field.

use flow::config::FlowConfig;
use flow::measure::Timing;
use flow::pipeline::{run_flow, FlowOptions, FlowOutcome};
use flow::record::FlowRecord;
use profile::{FakeCurve, FakeEngine, Grid, LatencyTable, SweepOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-flow-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A latency table with plateaus of width 8 (8, 16, 24, 32 are the frontier), dense and at 50%.
fn table(path: &Path) {
    let mut engine = FakeEngine::new(FakeCurve::Steps {
        width: 8,
        base_ms: 0.1,
        step_ms: 0.05,
    });
    let mut grid = Grid::over_hidden((4..=32).step_by(4).collect());
    grid.gate_width = profile::Sizes::Values(vec![6]);
    grid.density = vec![1.0, 0.5];
    let opts = SweepOptions {
        verify: false,
        budget_s: None,
        min_passes: 1,
        max_passes: 1,
        ..SweepOptions::default()
    };
    let outcome = profile::sweep(
        &mut engine,
        grid.points().unwrap(),
        &opts,
        &AtomicBool::new(false),
    );
    LatencyTable::from_sweep(&outcome, Some("fake".into()))
        .save(path)
        .unwrap();
}

const RECIPE: &str = r#"
[model]
arch = "lstm"
hidden = 16
layers = 2
init_scale = 0.1

[data]
dir = "data"
batch_size = 8
bptt = 10
eval_batch_size = 4
verify_checksums = false

[optim]
kind = "sgd"
lr = 1.0
clip_norm = 5.0

[schedule]
epochs = 1

[run]
seed = 3
log_every = 50
checkpoint_every = 40
"#;

const FLOW: &str = r#"
[flow]
target = "cpu-sparse"
train = "recipe.toml"
sizing = "frontier"
tolerance = 0.5

[baseline]
from = "train"
steps = 60

[profile]
table = "table.json"

[seed]
arch = "hlstm"
widths = [10]
gate_hidden = 6
density = 0.5

[grow]
to = 1.0
accumulate = 4
steps = 600

[prune]
densities = [0.6, 0.4]
steps = 40

[units]
keep = 0.7
steps = 30
retrain_steps = 30

[finish]
densities = [0.3]
steps = 30
"#;

/// A folder with the corpus, the recipe, the table and a flow config (`flow` text).
fn setup(name: &str, flow: &str) -> (PathBuf, PathBuf) {
    let d = temp(name);
    std::fs::create_dir_all(d.join("data")).unwrap();
    flow::synthetic::write_corpus(&d.join("data"), 40, 12_000, 11).unwrap();
    let recipe = RECIPE.replace("dir = \"data\"", &format!("dir = {:?}", d.join("data")));
    std::fs::write(d.join("recipe.toml"), recipe).unwrap();
    table(&d.join("table.json"));
    std::fs::write(d.join("flow.toml"), flow).unwrap();
    (d.clone(), d.join("flow.toml"))
}

fn opts<'a>(run: &Path, stop: &'a AtomicBool) -> FlowOptions<'a> {
    let quick = Timing {
        warmup: 1,
        min_reps: 3,
        min_secs: 0.0,
    };
    FlowOptions {
        run_dir: run.to_path_buf(),
        interrupted: stop,
        progress: false,
        timing: quick,
        stage_timing: quick,
    }
}

fn run(cfg_path: &Path, run_dir: &Path, stop: &AtomicBool) -> FlowOutcome {
    let cfg = FlowConfig::from_file(cfg_path).unwrap();
    let corpus = train::ptb::load_ptb(&cfg.train.resolve_data_dir(None), false).unwrap();
    run_flow(&cfg, &corpus, &opts(run_dir, stop)).unwrap()
}

fn finished(o: FlowOutcome) -> FlowRecord {
    match o {
        FlowOutcome::Finished(r) => *r,
        FlowOutcome::Interrupted => panic!("the flow was interrupted"),
    }
}

#[test]
fn the_flow_sizes_from_the_table_runs_every_stage_and_writes_a_loadable_model() {
    let (d, cfg) = setup("full", FLOW);
    let rec = finished(run(&cfg, &d.join("run"), &AtomicBool::new(false)));
    assert_eq!(rec.status, "finished");
    let sizing = rec.sizing.as_ref().unwrap();
    // 10 units asked for; 12 is the first measured width ≥ 10, on the (8, 16] plateau: 16.
    assert_eq!(sizing.seed_widths, vec![16]);
    assert_eq!(sizing.frontier, vec![8, 16, 24, 32]);
    // A sparse target without `[profile] densities` sizes at the table's lowest density.
    assert_eq!(sizing.curve.density, 0.5);
    let names: Vec<&str> = rec.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names[0], "01-grow");
    assert!(names.contains(&"02-prune-0.6"), "{names:?}");
    // The units stage left fewer units; the snap went back up to a frontier width.
    assert!(sizing.units_left[0] < 16, "{sizing:?}");
    assert!(
        sizing.frontier.contains(&sizing.snapped_widths[0]),
        "{sizing:?}"
    );
    // The units the snap added start with their outgoing weights masked: the snap stage grows
    // connections for them.
    assert!(
        sizing.snapped_widths[0] > sizing.units_left[0],
        "{sizing:?}"
    );
    let snap = rec.stages.iter().find(|s| s.kind == "snap").unwrap();
    assert!(snap.note.starts_with("grew connections"), "{}", snap.note);
    let limit = rec.valid_ppl_limit.unwrap();
    for s in &rec.stages {
        let v = s.model.valid_ppl.unwrap();
        assert!(v.is_finite());
        if s.kind == "prune" || s.kind == "finish" {
            assert_eq!(s.accepted, v <= limit, "{}: {v} vs {limit}", s.name);
        }
        assert_eq!(s.model.latency.len(), 1, "{}", s.name);
    }
    // Accepted prune steps lowered the density.
    if let Some(p) = rec
        .stages
        .iter()
        .find(|s| s.name == "02-prune-0.6" && s.accepted)
    {
        assert!((p.density - 0.6).abs() < 0.02, "{}", p.density);
    }
    let fin = rec.final_model.as_ref().unwrap();
    assert_eq!(
        fin.latency.iter().map(|l| l.batch).collect::<Vec<_>>(),
        vec![1, 10]
    );
    assert!(fin.test_ppl.unwrap().is_finite());
    assert!(d.join("run/final/model.onnx").is_file());
    // The final model loads in the inference engine with the recorded shape.
    let w = infer::ModelWeights::load(&d.join("run/final/model.safetensors")).unwrap();
    assert_eq!(w.layers.len(), fin.layers);
    assert_eq!(w.layers[0].hidden, fin.hidden[0]);
    // Learning happened: the final model beats a uniform guess over 41 words by far.
    assert!(fin.test_ppl.unwrap() < 20.0, "{}", fin.test_ppl.unwrap());
}

#[test]
fn an_interrupted_flow_resumes_to_the_same_model() {
    let (d, cfg) = setup("resume", FLOW);
    let a = finished(run(&cfg, &d.join("a"), &AtomicBool::new(false)));
    // Interrupt after one step of each of the first stages several times, then let it run.
    let stop = AtomicBool::new(true);
    for _ in 0..6 {
        match run(&cfg, &d.join("b"), &stop) {
            FlowOutcome::Interrupted => {}
            FlowOutcome::Finished(_) => panic!("finished while interrupted at every step"),
        }
    }
    stop.store(false, Ordering::SeqCst);
    let b = finished(run(&cfg, &d.join("b"), &stop));
    let bytes = |run: &str| std::fs::read(d.join(run).join("final/model.safetensors")).unwrap();
    assert!(bytes("a") == bytes("b"), "resumed final weights differ");
    let names = |r: &FlowRecord| -> Vec<(String, bool)> {
        r.stages
            .iter()
            .map(|s| (s.name.clone(), s.accepted))
            .collect()
    };
    assert_eq!(names(&a), names(&b));
    // A finished run is not trained again: a rerun only re-measures the final model.
    let c = finished(run(&cfg, &d.join("b"), &stop));
    assert_eq!(names(&c), names(&b));
    assert!(bytes("b") == std::fs::read(d.join("b/final/model.safetensors")).unwrap());
}

#[test]
fn an_unreachable_bar_keeps_no_pruning_step() {
    let flow = FLOW.replace(
        "[baseline]\nfrom = \"train\"\nsteps = 60",
        "[baseline]\nfrom = \"reported\"\nvalid_ppl = 1.0",
    );
    let (d, cfg) = setup("bar", &flow);
    let rec = finished(run(&cfg, &d.join("run"), &AtomicBool::new(false)));
    for s in &rec.stages {
        if matches!(s.kind.as_str(), "prune" | "finish" | "snap" | "units") {
            assert!(!s.accepted, "{} was kept above the bar", s.name);
        }
    }
    // Only the first prune step ran; the rest of the group was skipped.
    assert!(!rec.stages.iter().any(|s| s.name.starts_with("03-prune")));
    // The final model is the grown seed: dense again, the grow stage's widths.
    let grow = &rec.stages[0];
    let fin = rec.final_model.unwrap();
    assert_eq!(fin.params.nonzero, grow.model.params.nonzero);
    assert_eq!(fin.hidden, grow.model.hidden);
}

#[test]
fn bad_configs_fail_before_training_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "target = \"cpu-sparse\"",
            "target = \"tpu\"",
            "[flow] target",
        ),
        (
            "sizing = \"frontier\"",
            "sizing = \"multiple:0\"",
            "[flow] sizing",
        ),
        ("tolerance = 0.5", "tolerance = -1", "[flow] tolerance"),
        ("density = 0.5", "density = 1.5", "[seed] density"),
        ("widths = [10]", "widths = []", "[seed] widths"),
        ("gate_hidden = 6", "gate_hidden = 0", "gate_hidden"),
        (
            "densities = [0.6, 0.4]",
            "densities = [0.4, 0.6]",
            "[prune] densities",
        ),
        ("keep = 0.7", "keep = 1.0", "[units] keep"),
        ("to = 1.0", "to = 0.2", "[grow] to"),
        (
            "steps = 600",
            "steps = 600\nepochs = 1",
            "[grow] epochs and steps",
        ),
        (
            "table = \"table.json\"",
            "table = \"missing.json\"",
            "[profile] table",
        ),
        (
            "from = \"train\"",
            "from = \"somewhere\"",
            "[baseline] from",
        ),
        (
            "train = \"recipe.toml\"",
            "train = \"nope.toml\"",
            "[flow] train",
        ),
        ("[seed]", "[seed]\nbogus = 1", "bogus"),
    ];
    let (d, _) = setup("bad", FLOW);
    for (from, to, want) in cases {
        assert!(FLOW.contains(from), "fixture lacks {from}");
        let text = FLOW.replacen(from, to, 1);
        let err = FlowConfig::from_toml(&text, "bad.toml", &d, "bad")
            .err()
            .unwrap_or_else(|| panic!("{to} was accepted"))
            .to_string();
        assert!(err.contains(want), "{to}: `{err}` does not name {want}");
        assert!(err.contains("bad.toml"), "{err}");
    }
    let dense = FLOW.replace("target = \"cpu-sparse\"", "target = \"cpu-dense\"");
    let err = FlowConfig::from_toml(&dense, "d.toml", &d, "d")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[finish] densities"), "{err}");
}

#[test]
fn the_latency_budget_mode_takes_the_widest_width_within_it_and_snaps_under_it() {
    // The sparse target sizes at the table's 50% density: 0.6·(0.1 + 0.05·⌈h/8⌉) ms. Within
    // 0.13 ms: ⌈h/8⌉ ≤ 2, so 16 units at most.
    let flow = FLOW.replace("tolerance = 0.5", "tolerance = 0.5\nbudget_ms = 0.13");
    let (d, cfg) = setup("budget", &flow);
    let rec = finished(run(&cfg, &d.join("run"), &AtomicBool::new(false)));
    let sizing = rec.sizing.as_ref().unwrap();
    assert_eq!(sizing.budget_ms, Some(0.13));
    assert_eq!(sizing.seed_widths, vec![16]);
    for w in &sizing.snapped_widths {
        assert!(*w <= 16, "snapped above the budget: {sizing:?}");
    }
    assert!(rec.final_model.unwrap().hidden[0] <= 16);
    // A budget below the fastest measured width is refused, naming it.
    let tight = FLOW.replace("tolerance = 0.5", "tolerance = 0.5\nbudget_ms = 0.01");
    let (d, cfg) = setup("budget-tight", &tight);
    let c = FlowConfig::from_file(&cfg).unwrap();
    let corpus = train::ptb::load_ptb(&c.train.resolve_data_dir(None), false).unwrap();
    let err = run_flow(&c, &corpus, &opts(&d.join("run"), &AtomicBool::new(false)))
        .err()
        .expect("an impossible budget was accepted")
        .to_string();
    assert!(err.contains("0.01 ms"), "{err}");
    // Refused before the baseline was trained.
    assert!(!d.join("run/stages/00-baseline").exists());
}
