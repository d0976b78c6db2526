//! A fixed format the CPU cannot run fast is refused with a message naming it, not run on a
//! scalar stand-in (`bf16-amx` without AMX tiles ran ~15x slower than `bf16-panel`).

use infer::{Dtype, MaskShape, PlanOptions, StackPlan, SyntheticSpec};

#[test]
fn bf16_amx_is_refused_without_tiles_and_built_with_them() {
    let w = SyntheticSpec {
        layers: 1,
        input: 16,
        hidden: 32,
        gate_width: 0,
        bidirectional: false,
        density: 1.0,
        mask: MaskShape::Random,
        vocab: 0,
        seed: 3,
    }
    .build()
    .unwrap();
    let opts = PlanOptions {
        dtype: Dtype::Bf16,
        format: "bf16-amx".parse().unwrap(),
        seq: 5,
        ..PlanOptions::default()
    };
    let built = StackPlan::new(&w.layers, &opts);
    if kernels::packed::amx_available() {
        assert!(built.is_ok(), "{:?}", built.err());
    } else {
        let e = built
            .err()
            .expect("bf16-amx must be refused without AMX")
            .to_string();
        assert!(e.contains("bf16-amx") && e.contains("bf16-panel"), "{e}");
    }
    // The format it points to builds everywhere.
    let panel = PlanOptions {
        format: "bf16-panel".parse().unwrap(),
        ..opts
    };
    assert!(StackPlan::new(&w.layers, &panel).is_ok());
}
