//! DeepSpeech2's two convolutions at a training batch (20 utterances of 2.7 s: 161 x 270
//! spectrograms), each in both forms, forward and backward: the measurement behind
//! `ConvForm::for_spec` (docs/benchmarks.md, "AN4 convolutions").
//!
//!     cargo run --release -p symbiont-speech --example conv_forms [-- FRAMES BATCH]

use kernels::timing::median_secs;
use speech::conv::{conv2d_backward_in, conv2d_forward_in, Conv2dSpec, ConvForm};

fn values(len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 * scale - scale / 2.0)
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: conv_forms [FRAMES BATCH]"))
        .collect();
    let (frames, n) = (*args.first().unwrap_or(&270), *args.get(1).unwrap_or(&20));
    println!(
        "isa {}; threads {}",
        kernels::isa::active().name(),
        rayon::current_num_threads()
    );
    let conv1 = Conv2dSpec::deepspeech_conv1();
    let (h1, w1) = (conv1.out_h(161).unwrap(), conv1.out_w(frames).unwrap());
    for (name, spec, h, w, with_dx) in [
        ("conv1", conv1, 161, frames, false),
        ("conv2", Conv2dSpec::deepspeech_conv2(), h1, w1, true),
    ] {
        let (ho, wo) = (spec.out_h(h).unwrap(), spec.out_w(w).unwrap());
        let x = values(n * spec.in_c * h * w, 1.0);
        let weight = values(spec.weight_len(), 0.01);
        let bias = values(spec.out_c, 0.1);
        let gflop = 2.0 * (n * spec.out_c * ho * wo * spec.weight_len() / spec.out_c) as f64 / 1e9;
        for form in [ConvForm::Lowered, ConvForm::Implicit] {
            if form == ConvForm::Implicit && spec.sw != 1 {
                continue;
            }
            let mut y = vec![0.0f32; n * spec.out_c * ho * wo];
            let fwd = median_secs(5, || {
                conv2d_forward_in(form, &spec, &x, n, h, w, &weight, Some(&bias), &mut y);
            });
            let (mut dx, mut dw, mut db) = (
                vec![0.0f32; x.len()],
                vec![0.0; weight.len()],
                vec![0.0; spec.out_c],
            );
            let bwd = median_secs(5, || {
                let dx = with_dx.then_some(&mut dx[..]);
                conv2d_backward_in(
                    form,
                    &spec,
                    &x,
                    n,
                    h,
                    w,
                    &weight,
                    &y,
                    dx,
                    &mut dw,
                    Some(&mut db),
                );
            });
            let bwd_gflop = if with_dx { 2.0 * gflop } else { gflop };
            println!(
                "{name} {form:?}: forward {:.1} ms ({:.0} GFLOP/s), backward {:.1} ms ({:.0} GFLOP/s)",
                fwd * 1e3,
                gflop / fwd,
                bwd * 1e3,
                bwd_gflop / bwd
            );
        }
    }
}
