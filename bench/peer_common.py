"""Shared pieces of the peer inference benchmarks (PyTorch and ONNX Runtime LSTM inference).

Not run directly; imported by bench/infer_peers.py and bench/engines/{pytorch,onnxruntime}_lstm.py.

- `TorchLSTM` / `OrtLSTM`: one engine built from a PyTorch-named state dict (see
  bench/make_lstm_weights.py), layout "lstm" (nn.LSTM stack, input x of shape (T, B, I)) or "lm"
  (word language model, input token ids (T, B), output logits (T, B, V) for every step). Each has
  `prepare(batch, seq, rng)` which makes the input once, `forward()` (one full-sequence forward
  from a zero state, what is timed) and `output()` (a float32 numpy copy of the last result).
- `time_calls`: warm-up, then per-call wall time with time.perf_counter.
- `summary`, `provenance`: statistics and the machine/version record of the JSONL rows.

torch, onnx and onnxruntime are imported lazily so each engine script needs only its own.
"""
import math
import os
import platform
import subprocess
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DTYPES = {"f32": "f32", "fp32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16",
          "f16": "f16", "fp16": "f16", "float16": "f16"}


def canonical_dtype(name):
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} (f32, bf16 or f16)") from None


def describe(state):
    """(layout, layers, hidden, input, dirs, vocab) of a state dict from make_lstm_weights."""
    layout = "lm" if "encoder.weight" in state else "lstm"
    prefix = "rnn." if layout == "lm" else ""
    layers = 0
    while f"{prefix}weight_ih_l{layers}" in state:
        layers += 1
    if layers == 0:
        raise ValueError(f"no {prefix}weight_ih_l0 in the weights")
    hidden = state[f"{prefix}weight_hh_l0"].shape[1]
    input_size = state[f"{prefix}weight_ih_l0"].shape[1]
    dirs = 2 if f"{prefix}weight_ih_l0_reverse" in state else 1
    vocab = state["encoder.weight"].shape[0] if layout == "lm" else None
    return layout, layers, hidden, input_size, dirs, vocab


def make_input(layout, input_size, vocab, batch, seq, rng):
    """x ~ N(0, 1) of shape (T, B, I) for an LSTM stack, uniform token ids (T, B) for an LM."""
    if layout == "lm":
        return rng.integers(0, vocab, size=(seq, batch), dtype=np.int64)
    return rng.standard_normal((seq, batch, input_size), dtype=np.float32)


class TorchLSTM:
    """PyTorch eager: nn.LSTM (+ nn.Embedding, nn.Linear for the LM) under torch.inference_mode."""

    name = "pytorch"

    def __init__(self, state, threads, dtype="f32"):
        import torch
        from torch import nn
        self.torch = torch
        torch.set_num_threads(threads)
        self.layout, layers, hidden, input_size, dirs, vocab = describe(state)
        self.input_size, self.vocab = input_size, vocab
        self.dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[canonical_dtype(dtype)]
        lstm = nn.LSTM(input_size, hidden, layers, bidirectional=dirs == 2)
        if self.layout == "lm":
            model = _word_lm(nn.Embedding(vocab, input_size), lstm, nn.Linear(hidden * dirs, vocab))
        else:
            model = lstm
        # strict: every tensor of the file is used and every parameter comes from the file.
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
        self.model = model.to(self.dtype).eval()
        self.x = None
        self.y = None

    def prepare(self, batch, seq, rng):
        x = make_input(self.layout, self.input_size, self.vocab, batch, seq, rng)
        self.x = self.torch.from_numpy(x)
        if self.layout == "lstm":
            self.x = self.x.to(self.dtype)
        return x

    def forward(self):
        # hx omitted: nn.LSTM starts from a zero state, as the other engines do.
        with self.torch.inference_mode():
            out = self.model(self.x)
        self.y = out[0] if isinstance(out, tuple) else out

    def output(self):
        return self.y.float().numpy().copy()


def _word_lm(encoder, rnn, decoder):
    from torch import nn

    class WordLM(nn.Module):
        """The word-language-model forward: logits of every step."""

        def __init__(self):
            super().__init__()
            self.encoder, self.rnn, self.decoder = encoder, rnn, decoder

        def forward(self, tokens):
            return self.decoder(self.rnn(self.encoder(tokens))[0])

    return WordLM()


def _to_onnx_gates(w):
    """PyTorch gate blocks (i, f, g, o) along axis 0 -> ONNX order (i, o, f, c)."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def onnx_model(state, opset=17):
    """An ONNX graph with the `LSTM` operator, built directly from the weights.

    Built with onnx.helper rather than torch.onnx.export so the ORT engine does not need torch
    (and so the graph is exactly one LSTM node per layer). Per layer: W = (dirs, 4H, in),
    R = (dirs, 4H, H) with gates reordered to ONNX's (i, o, f, c), B = (dirs, 8H) = [Wb, Rb];
    initial_h / initial_c are omitted, which ONNX defines as zeros. The LM adds a Gather for the
    embedding and MatMul + Add for the decoder.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layout, layers, hidden, input_size, dirs, vocab = describe(state)
    prefix = "rnn." if layout == "lm" else ""
    inits, nodes = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=array.dtype), name))
        return name

    if layout == "lm":
        inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["seq", "batch"])]
        nodes.append(helper.make_node("Gather", [init("encoder", state["encoder.weight"]), "tokens"], ["emb"], axis=0))
        x = "emb"
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", input_size])]
        x = "x"
    for k in range(layers):
        sfx = ["", "_reverse"][:dirs]
        w = np.stack([_to_onnx_gates(state[f"{prefix}weight_ih_l{k}{s}"]) for s in sfx])
        r = np.stack([_to_onnx_gates(state[f"{prefix}weight_hh_l{k}{s}"]) for s in sfx])
        b = np.stack([np.concatenate([_to_onnx_gates(state[f"{prefix}bias_ih_l{k}{s}"]),
                                      _to_onnx_gates(state[f"{prefix}bias_hh_l{k}{s}"])]) for s in sfx])
        nodes.append(helper.make_node(
            "LSTM", [x, init(f"W{k}", w), init(f"R{k}", r), init(f"B{k}", b)], [f"Y{k}"], hidden_size=hidden,
            direction="bidirectional" if dirs == 2 else "forward"))
        # Y is (T, dirs, B, H); the next layer and the caller want (T, B, dirs * H).
        if dirs == 1:
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", init(f"axis1_{k}", np.array([1], np.int64))], [f"h{k}"]))
        else:
            nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{k}", init(f"shape{k}", np.array([0, 0, -1], np.int64))],
                                          [f"h{k}"]))
        x = f"h{k}"
    if layout == "lm":
        nodes.append(helper.make_node("MatMul", [x, init("decoder_wt", state["decoder.weight"].T)], ["dec"]))
        nodes.append(helper.make_node("Add", ["dec", init("decoder_b", state["decoder.bias"])], ["logits"]))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["seq", "batch", vocab])]
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"]))
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", "batch", hidden * dirs])]
    graph = helper.make_graph(nodes, f"{layout}_lstm", inputs, outputs, inits)
    # IR version pinned: onnx writes its newest by default, which may be newer than ORT reads
    # (onnx 1.23 writes 14, ORT 1.31 reads up to 13). 8 covers opset 17.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="symbiont-bench",
                              ir_version=8)
    onnx.checker.check_model(model)
    return model


class OrtLSTM:
    """ONNX Runtime (CPU execution provider) on the graph of `onnx_model`.

    Session: intra_op_num_threads=threads, inter_op_num_threads=1, sequential execution, all graph
    optimisations. Timed call: run_with_iobinding with the input bound once and the output bound to
    CPU memory that ORT allocates per run (as PyTorch allocates its outputs), so no numpy conversion
    is in the timing.
    """

    name = "onnxruntime"

    def __init__(self, state, threads, dtype="f32"):
        import onnxruntime as ort
        if canonical_dtype(dtype) != "f32":
            raise ValueError(f"onnxruntime's CPU LSTM kernel is float32 only (asked for {dtype})")
        self.ort = ort
        self.layout, _, _, self.input_size, _, self.vocab = describe(state)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # warnings about unused initializers etc. are noise here
        self.session = ort.InferenceSession(onnx_model(state).SerializeToString(), so,
                                            providers=["CPUExecutionProvider"])
        self.in_name = self.session.get_inputs()[0].name
        self.out_name = self.session.get_outputs()[0].name
        self.binding = None

    def prepare(self, batch, seq, rng):
        x = make_input(self.layout, self.input_size, self.vocab, batch, seq, rng)
        self.x_value = self.ort.OrtValue.ortvalue_from_numpy(x)  # kept alive: the binding points into it
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input(self.in_name, self.x_value)
        self.binding.bind_output(self.out_name, "cpu")
        return x

    def forward(self):
        self.session.run_with_iobinding(self.binding)

    def output(self):
        return self.binding.copy_outputs_to_cpu()[0].copy()


ENGINES = {"pytorch": TorchLSTM, "onnxruntime": OrtLSTM}


def time_calls(fn, reps=None, warmup_calls=3, warmup_s=0.1, target_s=0.5, min_reps=5, max_reps=20_000):
    """Warm up (at least `warmup_calls` calls and `warmup_s` seconds), then time `reps` calls.

    reps None: adaptive, round(target_s / t) clamped to [min_reps, max_reps] where t is the mean
    warm-up call; small models get many repetitions, large ones `min_reps`. Returns
    (samples_ms, warmup_calls_done).
    """
    n, t0 = 0, time.perf_counter()
    while n < warmup_calls or (time.perf_counter() - t0 < warmup_s and n < 10 * max_reps):
        fn()
        n += 1
    per_call = (time.perf_counter() - t0) / n
    if reps is None:
        reps = int(min(max_reps, max(min_reps, round(target_s / per_call))))
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    # Nanosecond resolution is plenty and keeps the JSON of 20k samples short.
    return [round(x, 6) for x in samples], n


def summary(samples_ms):
    """median / p10 / p90 (linear interpolation between order statistics) / mean / min."""
    a = np.asarray(samples_ms, dtype=np.float64)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return {"median_ms": float(med), "p10_ms": float(p10), "p90_ms": float(p90), "mean_ms": float(a.mean()),
            "min_ms": float(a.min()), "reps": int(a.size)}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_commit():
    """HEAD's hash, with "-dirty" when tracked files differ from it; None outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def versions():
    """Versions of whichever engine libraries are installed (without importing torch needlessly)."""
    from importlib import metadata
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("torch", "onnxruntime", "onnx", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# The variables that hold each engine to an instruction-set level (docs/benchmarks.md, "ISA levels"):
# symbiont's hand kernels, PyTorch's ATen kernels, its oneDNN LSTM and its MKL GEMMs. ONNX Runtime's MLAS picks its
# own kernels and has no such switch.
ISA_ENV = ("SYMBIONT_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa_env():
    return {k: os.environ.get(k) for k in ISA_ENV}


def provenance(threads):
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "machine": platform.machine(),
            "os": platform.platform(), "git_commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "isa_env": isa_env(), **versions()}


def rel_err(got, want):
    """Error measures of `got` against the reference `want`: max |d|, max |d| / max |want| (the
    error relative to the output's scale; element-wise ratios blow up at values near zero), and
    rms(d) / rms(want)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} != reference shape {want.shape}")
    d = np.abs(got - want)
    scale = float(np.abs(want).max()) or 1.0
    rms = math.sqrt(float(np.mean(want * want))) or 1.0
    return {"max_abs_err": float(d.max()), "max_rel_err": float(d.max()) / scale,
            "rms_rel_err": math.sqrt(float(np.mean(d * d))) / rms}


# --- Command engines for `symbiont profile --engine command` (bench/engines/*.py) -------------

# Configuration keys, their environment variables and defaults (None: required).
ENGINE_KEYS = {"hidden": (int, None), "input": (int, 0), "layers": (int, 1), "batch": (int, 1), "seq": (int, 35),
               "threads": (int, 1), "dtype": (str, "f32"), "density": (float, 1.0)}
# Knobs of the timing itself (flags or serve-mode keys, no environment variable).
TIMING_KEYS = {"reps": (int, None), "seed": (int, 0), "target_s": (float, 0.5)}


def engine_config(flags, overrides=None):
    """Resolve one configuration: serve-mode `overrides` > command-line flags > SYMBIONT_* env > default."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ENGINE_KEYS) - set(TIMING_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} (known: {sorted({**ENGINE_KEYS, **TIMING_KEYS})})")
    cfg = {}
    for key, (kind, default) in {**ENGINE_KEYS, **TIMING_KEYS}.items():
        env = os.environ.get(f"SYMBIONT_{key.upper()}", "") if key in ENGINE_KEYS else ""
        if overrides.get(key) is not None:
            value = overrides[key]
        elif flags.get(key) is not None:
            value = flags[key]
        elif env.strip():
            value = env.strip()
        else:
            value = default
        if value is None and key in ENGINE_KEYS:
            raise ValueError(f"--{key} (or SYMBIONT_{key.upper()}) is required")
        try:
            cfg[key] = None if value is None else kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {value!r} is not a {kind.__name__}") from None
    cfg["input"] = cfg["input"] or cfg["hidden"]  # 0: same as hidden
    cfg["dtype"] = canonical_dtype(cfg["dtype"])
    for key in ("hidden", "input", "layers", "batch", "seq", "threads"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg["reps"] is not None and cfg["reps"] < 1:
        raise ValueError(f"reps must be >= 1, got {cfg['reps']}")
    return cfg


def engine_run(engine, cfg):
    """Random weights (nn.LSTM stack, seeded), then warm-up and timed full-sequence forwards."""
    from make_lstm_weights import make_state
    state = make_state("lstm", cfg["layers"], cfg["hidden"], cfg["input"], density=cfg["density"], seed=cfg["seed"])
    e = ENGINES[engine](state, cfg["threads"], cfg["dtype"])
    del state
    e.prepare(cfg["batch"], cfg["seq"], np.random.default_rng(cfg["seed"] + 1))
    samples, warm = time_calls(e.forward, reps=cfg["reps"], target_s=cfg["target_s"])
    version = versions().get("torch" if engine == "pytorch" else engine)
    return {"samples_ms": samples, **summary(samples), "warmup_calls": warm, "engine": engine, "version": version,
            "config": cfg}


def engine_main(engine, doc):
    """Command-line entry of bench/engines/<engine>_lstm.py: one configuration, or --serve."""
    import argparse
    import json
    import sys
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, (kind, default) in ENGINE_KEYS.items():
        p.add_argument(f"--{key}", type=kind, help=f"default: $SYMBIONT_{key.upper()}, else "
                                                   + ("required" if default is None else
                                                      "hidden" if key == "input" else str(default)))
    p.add_argument("--reps", type=int, help="timed forwards (default: adaptive, about --target-s seconds)")
    p.add_argument("--target-s", type=float, help="timing budget when --reps is not given (default 0.5)")
    p.add_argument("--seed", type=int, help="weights and input seed (default 0)")
    p.add_argument("--serve", action="store_true",
                   help="read one JSON configuration per stdin line, write one JSON result line each")
    flags = vars(p.parse_args())
    serve = flags.pop("serve")
    if not serve:
        try:
            result = engine_run(engine, engine_config(flags))
        except Exception as e:  # noqa: BLE001 - any failure is reported the same way
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        print(json.dumps(result), flush=True)
        return 0
    # Serve: each line's keys override the flags / environment for that line only; a failing
    # line answers {"error": ...} and the server keeps going. EOF ends it.
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            overrides = json.loads(line)
            if not isinstance(overrides, dict):
                raise ValueError("each line must be a JSON object")
            result = engine_run(engine, engine_config(flags, overrides))
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"
            print(f"error: {msg}", file=sys.stderr)
            result = {"error": msg}
        print(json.dumps(result), flush=True)
    return 0
