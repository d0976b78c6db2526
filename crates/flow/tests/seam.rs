//! The device seam holds: training with compression runs on any `Backend`, and the trainer and
//! the compression hook move data back to the host only at saves and at pruning events, never per
//! step. A backend that delegates to the CPU and counts every transfer stands in for a GPU.

use kernels::support::Support;
use model::backend::{Backend, Cpu, DeviceError, HlstmAt, LstmAt, Operand, Update, XentTargets};
use model::dropout::DropoutCtx;
use model::hlstm::HlstmShape;
use model::lstm::LstmShape;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use train::checkpoint::Checkpoint;
use train::trainer::{fresh_checkpoint, train, Outcome, RunOptions};
use train::TrainConfig;

/// The CPU, counting the values it moves to the host (`download`, `release`) and from it
/// (`upload`, `adopt`).
#[derive(Default)]
struct Counting {
    to_host: AtomicUsize,
    to_device: AtomicUsize,
}

impl Counting {
    fn note(&self, counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

type Buf = Vec<f32>;

impl Backend<f32> for Counting {
    type Buf = Buf;
    type Ids = Vec<u32>;
    type LstmTape = <Cpu as Backend<f32>>::LstmTape;
    type HlstmTape = <Cpu as Backend<f32>>::HlstmTape;

    fn describe(&self) -> String {
        "counting cpu".into()
    }
    fn zeros(&self, n: usize) -> Result<Buf, DeviceError> {
        Cpu.zeros(n)
    }
    fn upload(&self, host: &[f32]) -> Result<Buf, DeviceError> {
        self.note(&self.to_device, host.len());
        Cpu.upload(host)
    }
    fn adopt(&self, host: Vec<f32>) -> Result<Buf, DeviceError> {
        self.note(&self.to_device, host.len());
        Cpu.adopt(host)
    }
    fn release(&self, buf: Buf) -> Result<Vec<f32>, DeviceError> {
        self.note(&self.to_host, buf.len());
        Backend::<f32>::release(&Cpu, buf)
    }
    fn download(&self, buf: &Buf, out: &mut [f32]) -> Result<(), DeviceError> {
        self.note(&self.to_host, buf.len());
        Cpu.download(buf, out)
    }
    fn len(&self, buf: &Buf) -> usize {
        buf.len()
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<Vec<u32>, DeviceError> {
        Backend::<f32>::upload_ids(&Cpu, ids)
    }
    fn copy(
        &self,
        s: &Buf,
        sa: usize,
        d: &mut Buf,
        da: usize,
        n: usize,
    ) -> Result<(), DeviceError> {
        Cpu.copy(s, sa, d, da, n)
    }
    fn fill_on(&self, buf: &mut Buf, support: &Support, v: f32) -> Result<(), DeviceError> {
        Cpu.fill_on(buf, support, v)
    }
    fn embedding_forward(
        &self,
        p: &Buf,
        t: Range<usize>,
        e: usize,
        ids: &Vec<u32>,
        out: &mut Buf,
    ) -> Result<(), DeviceError> {
        Cpu.embedding_forward(p, t, e, ids, out)
    }
    fn embedding_backward(
        &self,
        d: &Buf,
        e: usize,
        ids: &Vec<u32>,
        g: &mut Buf,
        t: Range<usize>,
    ) -> Result<(), DeviceError> {
        Cpu.embedding_backward(d, e, ids, g, t)
    }
    fn dropout_forward(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: &Buf,
        at: usize,
        mask: &mut Buf,
        out: &mut Buf,
    ) -> Result<(), DeviceError> {
        Cpu.dropout_forward(ctx, site, x, at, mask, out)
    }
    fn dropout_mask(&self, ctx: &DropoutCtx, site: u64, mask: &mut Buf) -> Result<(), DeviceError> {
        Cpu.dropout_mask(ctx, site, mask)
    }
    fn multiply(&self, d: &mut Buf, mask: &Buf, n: usize) -> Result<(), DeviceError> {
        Cpu.multiply(d, mask, n)
    }
    fn add_into(&self, d: &mut Buf, r: Range<usize>, s: &Buf) -> Result<(), DeviceError> {
        Cpu.add_into(d, r, s)
    }
    fn lstm_tape(&self, s: LstmShape) -> Result<Self::LstmTape, DeviceError> {
        Cpu.lstm_tape(s)
    }
    fn lstm_forward(
        &self,
        s: LstmShape,
        p: &Buf,
        at: &LstmAt,
        x: &Buf,
        h0: &Buf,
        c0: &Buf,
        tape: &mut Self::LstmTape,
    ) -> Result<(), DeviceError> {
        Cpu.lstm_forward(s, p, at, x, h0, c0, tape)
    }
    fn lstm_output<'a>(&self, tape: &'a Self::LstmTape, s: LstmShape) -> (&'a Buf, usize) {
        Cpu.lstm_output(tape, s)
    }
    fn lstm_final_state(
        &self,
        tape: &Self::LstmTape,
        s: LstmShape,
        h: &mut Buf,
        c: &mut Buf,
    ) -> Result<(), DeviceError> {
        Cpu.lstm_final_state(tape, s, h, c)
    }
    fn lstm_backward(
        &self,
        s: LstmShape,
        p: &Buf,
        at: &LstmAt,
        x: &Buf,
        dh: &Buf,
        tape: &mut Self::LstmTape,
        g: &mut Buf,
        dx: Option<&mut Buf>,
    ) -> Result<(), DeviceError> {
        Cpu.lstm_backward(s, p, at, x, dh, tape, g, dx)
    }
    fn hlstm_tape(&self, s: HlstmShape) -> Result<Self::HlstmTape, DeviceError> {
        Cpu.hlstm_tape(s)
    }
    fn hlstm_forward(
        &self,
        s: HlstmShape,
        p: &Buf,
        at: &HlstmAt,
        x: &Buf,
        mask: Option<&Buf>,
        h0: &Buf,
        c0: &Buf,
        tape: &mut Self::HlstmTape,
    ) -> Result<(), DeviceError> {
        Cpu.hlstm_forward(s, p, at, x, mask, h0, c0, tape)
    }
    fn hlstm_output<'a>(&self, tape: &'a Self::HlstmTape, s: HlstmShape) -> (&'a Buf, usize) {
        Cpu.hlstm_output(tape, s)
    }
    fn hlstm_final_state(
        &self,
        tape: &Self::HlstmTape,
        s: HlstmShape,
        h: &mut Buf,
        c: &mut Buf,
    ) -> Result<(), DeviceError> {
        Cpu.hlstm_final_state(tape, s, h, c)
    }
    fn hlstm_backward(
        &self,
        s: HlstmShape,
        p: &Buf,
        at: &HlstmAt,
        x: &Buf,
        dh: &Buf,
        tape: &mut Self::HlstmTape,
        g: &mut Buf,
        dx: Option<&mut Buf>,
    ) -> Result<(), DeviceError> {
        Cpu.hlstm_backward(s, p, at, x, dh, tape, g, dx)
    }
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Operand<'_, Buf>,
        b: Operand<'_, Buf>,
        beta: f32,
        c: &mut Buf,
        c_at: usize,
    ) -> Result<(), DeviceError> {
        Cpu.gemm(m, n, k, alpha, a, b, beta, c, c_at)
    }
    fn softmax_xent(
        &self,
        logits: &mut Buf,
        v: usize,
        targets: &Vec<u32>,
        p: &Buf,
        bias: Range<usize>,
        train: Option<XentTargets<'_, Buf>>,
        row_loss: &mut [f64],
    ) -> Result<(), DeviceError> {
        Cpu.softmax_xent(logits, v, targets, p, bias, train, row_loss)
    }
    fn sum_squares_on(&self, x: &Buf, support: &Support) -> Result<f64, DeviceError> {
        Cpu.sum_squares_on(x, support)
    }
    fn update(
        &self,
        p: &mut Buf,
        g: &Buf,
        state: [Option<&mut Buf>; 2],
        u: Update,
        support: &Support,
    ) -> Result<(), DeviceError> {
        Cpu.update(p, g, state, u, support)
    }
}

const CONFIG: &str = r#"
[model]
arch = "lstm"
hidden = 16
layers = 2
dropout = 0.2
init_scale = 0.1
[data]
batch_size = 4
bptt = 6
eval_batch_size = 4
[optim]
kind = "sgd"
lr = 1.0
momentum = 0.5
clip_norm = 5.0
[schedule]
epochs = 4
[run]
seed = 3
log_every = 1000
checkpoint_every = 0
[compress]
[[compress.phase]]
what = "prune"
curve = "step"
from = 1.0
to = 0.5
start = "PRUNE_AT steps"
end = "PRUNE_END steps"
every = "100 steps"
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-seam-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Trains `steps` steps on `be` with the prune phase firing at step `prune_at` (once, or never
/// when past `steps`); returns the checkpoint.
fn run<B: Backend<f32> + 'static>(be: &B, name: &str, steps: u64, prune_at: u64) -> Checkpoint {
    let d = dir(name);
    flow::synthetic::write_corpus(&d, 30, 3_000, 5).unwrap();
    let text = CONFIG
        .replace("PRUNE_AT", &prune_at.to_string())
        .replace("PRUNE_END", &(prune_at + 50).to_string());
    let config = TrainConfig::from_toml(&text, "seam.toml").unwrap();
    let corpus = train::ptb::load_ptb(&d, false).unwrap();
    let mut ckpt = fresh_checkpoint(&config, &corpus).unwrap();
    let stop = AtomicBool::new(false);
    let opts = RunOptions {
        out_dir: d.join("run"),
        max_steps: Some(steps),
        interrupted: &stop,
        progress: false,
    };
    let mut hook = flow::run::training_hook::<B>(&config, &corpus, &ckpt, "seam.toml").unwrap();
    let outcome = train(be, &mut ckpt, &corpus, &opts, hook.as_mut()).unwrap();
    assert_eq!(outcome, Outcome::MaxSteps);
    let _ = std::fs::remove_dir_all(&d);
    ckpt
}

#[test]
fn training_on_another_backend_gives_the_same_model() {
    let on_cpu = run(&Cpu, "cpu", 30, 20);
    let counting = Counting::default();
    let on_counting = run(&counting, "counting", 30, 20);
    assert_eq!(on_cpu.trainer.step, 30);
    assert!(!on_cpu.model.params.is_empty(), "the parameters came back");
    assert_eq!(on_cpu.model.params, on_counting.model.params);
    assert_eq!(on_cpu.optimizer.m, on_counting.optimizer.m);
    assert_eq!(on_cpu.carried, on_counting.carried);
    // The prune phase did fire: half of the weights are zero.
    let w = on_cpu.model.named("rnn.weight_hh_l0").unwrap();
    let zeros = w.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (zeros as f64 / w.len() as f64 - 0.5).abs() < 0.05,
        "{zeros} of {}",
        w.len()
    );
}

#[test]
fn nothing_returns_to_the_host_per_step_only_at_saves_and_events() {
    let moved = |steps: u64, prune_at: u64| {
        let be = Counting::default();
        let ckpt = run(&be, &format!("count-{steps}-{prune_at}"), steps, prune_at);
        let n = ckpt.model.num_params();
        (
            be.to_host.load(Ordering::Relaxed),
            be.to_device.load(Ordering::Relaxed),
            n,
        )
    };
    // No event in either run and one save at the end: the same traffic for 10 or 30 steps.
    let (host_10, dev_10, n) = moved(10, 200);
    let (host_30, dev_30, _) = moved(30, 200);
    assert_eq!(
        host_10, host_30,
        "values moved to the host grow with the steps"
    );
    assert_eq!(
        dev_10, dev_30,
        "values moved to the device grow with the steps"
    );
    // A pruning event adds the weights' round trip (and the masks' upload).
    let (host_event, dev_event, _) = moved(30, 20);
    assert!(host_event >= host_30 + n, "{host_event} vs {host_30} + {n}");
    assert!(
        dev_event >= dev_30 + 2 * n,
        "{dev_event} vs {dev_30} + 2·{n}"
    );
    // What comes back at all is bounded: weights and momentum for the save, again when training
    // returns, and the carried state each time (2 layers, h and c, 4 x 16).
    let carried = 2 * 2 * 4 * 16;
    assert!(
        host_30 <= 4 * n + 2 * carried,
        "{host_30} values came back for {n} parameters"
    );
}
