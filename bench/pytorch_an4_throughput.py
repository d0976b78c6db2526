#!/usr/bin/env python3
"""PyTorch baseline: CPU training throughput of symbiont's AN4 DeepSpeech2 model, same batches.

Model (deepspeech.pytorch's 2018 model, as tools/reference/deepspeech_model.py builds it), float32:
    Conv2d(1->C, 41x11, stride 2x2, pad 0x10) + BatchNorm2d + Hardtanh(0, 20)
    -> Conv2d(C->C, 21x11, stride 2x1) + BatchNorm2d + Hardtanh(0, 20)
    -> L x [SequenceWise BatchNorm1d (all layers but the first) + bidirectional nn.LSTM(bias=False)
            on packed sequences, directions summed]
    -> SequenceWise(BatchNorm1d(H) + Linear(H -> 29, bias=False))
MaskConv zeroes the frames past each utterance's end after every conv and BatchNorm layer, with
that layer's own lengths (as symbiont does; deepspeech.pytorch used the final lengths). Default
PyTorch initialisation (symbiont draws from the same distributions, not the same numbers).
Training step: CTC (blank 0, impossible utterances zeroed as symbiont skips them) summed over
the batch and divided by the batch size, backward, clip_grad_norm_(400), AdamW(lr 1e-3,
weight_decay 1e-5) -- configs/an4-baseline-cpu.toml, first epoch (no annealing yet).

Data, as crates/speech/src/{an4,wav,features,data,labels}.rs: AN4's training list, 16 kHz mono
int16 WAV scaled by 1/32768; log(1 + |STFT|) with 320-sample windows (symmetric Hamming), hop
160, reflect-padded by 160 on both sides (1 + n // 160 frames, 161 bins), normalised per
utterance by its mean and unbiased (n - 1) standard deviation; labels _'A-Z<space>. Utterances
sorted by (frames, index) and cut into consecutive batches of 20, visited in that order
(SortaGrad's first epoch). Only the utterances of the first --steps batches are featurized (their
order needs only the WAV lengths), and all padded batch tensors are built before the clock starts;
the steps are timed one by one with time.perf_counter().

Audio seconds count 10 ms per spectrogram frame, as symbiont's `audio_seconds_per_second` does.
symbiont's `train --json` figure covers its training steps (batch assembly, forward, CTC,
backward, clipping, update), not the end-of-epoch evaluation or checkpoints; this one covers the
steps without building the padded batches (done before the clock starts).
bench/an4_train_throughput.sh runs the two side by side.

Usage (from the repo root):
    .venv/bin/python bench/pytorch_an4_throughput.py --threads 2 --out bench/results/pytorch-an4.json
    .venv/bin/python bench/pytorch_an4_throughput.py --steps 3 --threads 1   (a quick check)
"""
import argparse
import json
import os
import platform
import sys
import time
import wave

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE, WINDOW, HOP, BINS = 16000, 320, 160, 161
LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "


# ---------------------------------------------------------------- data (crates/speech/src/an4.rs)

def parse_transcription(line):
    """(TEXT, id) of `<s> TEXT </s> (id)`: markers and the id dropped, upper case."""
    line = line.strip()
    open_ = line.rfind("(")
    if open_ < 0 or not line.endswith(")"):
        raise ValueError(f"no trailing (id) in {line!r}")
    uid = line[open_ + 1:-1].strip()
    words = [w for w in line[:open_].split() if w not in ("<s>", "</s>")]
    return " ".join(words).upper(), uid


def encode(text):
    out = []
    for ch in text.upper():
        i = LABELS.find(ch)
        if i <= 0:
            raise ValueError(f"character {ch!r} has no label")
        out.append(i)
    return out


def load_train_list(data_dir):
    etc = os.path.join(data_dir, "etc")
    with open(os.path.join(etc, "an4_train.fileids")) as f:
        ids = [l.strip() for l in f if l.strip()]
    with open(os.path.join(etc, "an4_train.transcription")) as f:
        texts = [l for l in f if l.strip()]
    if len(ids) != len(texts):
        raise SystemExit(f"{len(texts)} transcriptions for {len(ids)} files")
    utts = []
    for fileid, line in zip(ids, texts):
        text, uid = parse_transcription(line)
        if fileid.rsplit("/", 1)[-1] != uid:
            raise SystemExit(f"transcription of {uid} where the file list has {fileid}")
        utts.append((os.path.join(data_dir, "wav", fileid + ".wav"), encode(text)))
    return utts


def wav_samples(path, header_only=False):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getframerate() != RATE or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: {w.getnchannels()} channels, {w.getframerate()} Hz, "
                             f"{8 * w.getsampwidth()}-bit; 16 kHz mono 16-bit PCM expected")
        if header_only:
            return w.getnframes()
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


# ------------------------------------------------------------ features (crates/speech/src/features.rs)

HAMMING = np.hamming(WINDOW)  # symmetric: 0.54 - 0.46 cos(2 pi k / (N - 1))


def spectrogram(x):
    """(frames, 161) float32: normalised log(1 + |STFT|), computed in float64 like features.rs."""
    pad = WINDOW // 2
    if len(x) <= pad:
        raise ValueError(f"{len(x)} samples are too few")
    y = np.pad(x.astype(np.float64), pad, mode="reflect")
    frames = 1 + len(x) // HOP
    idx = np.arange(frames)[:, None] * HOP + np.arange(WINDOW)[None, :]
    s = np.log1p(np.abs(np.fft.rfft(y[idx] * HAMMING, n=WINDOW, axis=1)))
    mean = s.mean()
    std = s.std(ddof=1) if s.size > 1 else 0.0
    return ((s - mean) * (1.0 / std if std > 0 else 1.0)).astype(np.float32)


# -------------------------------------------------------------------------------------- model

def conv_len(n, k, s, p):
    return (n + 2 * p - k) // s + 1


class DeepSpeech(nn.Module):
    """state_dict names as deepspeech.pytorch's (and symbiont's checkpoint)."""

    def __init__(self, channels, hidden, layers):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Module()
        self.conv.seq_module = nn.Sequential(
            nn.Conv2d(1, channels, (41, 11), stride=(2, 2), padding=(0, 10)), nn.BatchNorm2d(channels),
            nn.Hardtanh(0, 20),
            nn.Conv2d(channels, channels, (21, 11), stride=(2, 1)), nn.BatchNorm2d(channels),
            nn.Hardtanh(0, 20))
        rows = conv_len(conv_len(BINS, 41, 2, 0), 21, 2, 0)  # 21
        self.rnns = nn.ModuleList()
        for layer in range(layers):
            m = nn.Module()
            if layer > 0:
                m.batch_norm = nn.Module()
                m.batch_norm.module = nn.BatchNorm1d(hidden)
            m.rnn = nn.LSTM(channels * rows if layer == 0 else hidden, hidden, bidirectional=True, bias=False)
            self.rnns.append(m)
        self.fc = nn.Module()
        self.fc.__dict__["_modules"]["0"] = nn.Module()
        self.fc._modules["0"].module = nn.Sequential(nn.BatchNorm1d(hidden),
                                                     nn.Linear(hidden, len(LABELS), bias=False))

    @staticmethod
    def out_lengths(lengths):
        lens1 = (lengths + 2 * 10 - 11) // 2 + 1
        return lens1, lens1 - 10

    def forward(self, x, lengths):
        """x (N, 1, 161, T), lengths (N,) int64 -> logits (T', N, 29), output lengths (N,)."""
        mods = self.conv.seq_module
        lens1, lens2 = self.out_lengths(lengths)

        def mask(y, lens):  # zero the frames past each utterance's end (MaskConv)
            keep = torch.arange(y.shape[3]).unsqueeze(0) < lens.unsqueeze(1)  # (N, T)
            return y * keep[:, None, None, :].to(y.dtype)

        y = mask(mods[0](x), lens1)
        y = mask(mods[1](y), lens1)
        y = mods[2](y)
        y = mask(mods[3](y), lens2)
        y = mask(mods[4](y), lens2)
        y = mods[5](y)
        n, c, h, t = y.shape
        y = y.view(n, c * h, t).permute(2, 0, 1).contiguous()  # (T, N, C*H)
        for layer, m in enumerate(self.rnns):
            if layer > 0:
                tt, nn_, f = y.shape
                y = m.batch_norm.module(y.view(tt * nn_, f)).view(tt, nn_, f)
            packed = nn.utils.rnn.pack_padded_sequence(y, lens2, enforce_sorted=False)
            out, _ = m.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=y.shape[0])
            y = out[:, :, :self.hidden] + out[:, :, self.hidden:]
        tt, nn_, f = y.shape
        logits = self.fc._modules["0"].module(y.reshape(tt * nn_, f)).view(tt, nn_, len(LABELS))
        return logits, lens2


def ctc_possible(target, frames):
    """Whether CTC has a path: frames >= labels + adjacent repeats (each needs a blank)."""
    repeats = sum(1 for a, b in zip(target, target[1:]) if a == b)
    return frames >= len(target) + repeats


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "an4"),
                    help="AN4 root with etc/ and wav/ (relative paths are relative to the repo root)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--conv-channels", type=int, default=32)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--clip-norm", type=float, default=400.0)
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps: the first N batches of the sorted order (default: all, one epoch)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data_dir = os.path.normpath(args.data_dir if os.path.isabs(args.data_dir)
                                else os.path.join(REPO, args.data_dir))

    # Order: (frames, index), frames = 1 + samples // hop, from the WAV headers alone.
    utts = load_train_list(data_dir)
    frames = [1 + wav_samples(p, header_only=True) // HOP for p, _ in utts]
    order = sorted(range(len(utts)), key=lambda i: (frames[i], i))
    batches = [order[k:k + args.batch] for k in range(0, len(order), args.batch)]
    steps = len(batches) if args.steps is None else args.steps
    if not 1 <= steps <= len(batches):
        raise SystemExit(f"--steps must be between 1 and {len(batches)} (one epoch)")

    t_feat = time.perf_counter()
    prepared = []
    for idx in batches[:steps]:
        specs = [spectrogram(wav_samples(utts[i][0])) for i in idx]
        assert all(s.shape[0] == frames[i] for s, i in zip(specs, idx))
        lengths = torch.tensor([s.shape[0] for s in specs], dtype=torch.int64)
        t = int(lengths.max())
        x = torch.zeros(len(idx), 1, BINS, t)
        for b, s in enumerate(specs):
            x[b, 0, :, :s.shape[0]] = torch.from_numpy(s.T)
        targets = [utts[i][1] for i in idx]
        out_lens = DeepSpeech.out_lengths(lengths)[1]
        if int(out_lens.min()) < 1:
            raise SystemExit("an utterance is too short for the convolutions")
        possible = [ctc_possible(tg, int(l)) for tg, l in zip(targets, out_lens)]
        prepared.append((x, lengths, torch.tensor([l for tg in targets for l in tg], dtype=torch.int64),
                         torch.tensor([len(tg) for tg in targets], dtype=torch.int64),
                         torch.tensor(possible), float(lengths.sum()) / 100.0))
    feat_seconds = time.perf_counter() - t_feat
    print(f"featurized {sum(len(b) for b in batches[:steps])} utterances in {feat_seconds:.1f} s; "
          f"training {steps} steps", file=sys.stderr)

    model = DeepSpeech(args.conv_channels, args.hidden, args.layers)
    model.train()
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay)

    step_seconds, losses, skipped = [], [], 0
    for x, lengths, flat, tgt_lens, possible, _ in prepared:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, out_lens = model(x, lengths)
        logp = F.log_softmax(logits, dim=2)
        per = F.ctc_loss(logp, flat, out_lens, tgt_lens, blank=0, reduction="none", zero_infinity=True)
        loss = per.sum() / x.shape[0]
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, args.clip_norm)
        if torch.isfinite(loss) and torch.isfinite(norm):
            opt.step()
        else:
            skipped += 1
        step_seconds.append(time.perf_counter() - t0)
        # Mean CTC loss per utterance with a path (symbiont's logged per-step loss).
        losses.append(float(per.detach()[possible].sum()) / max(int(possible.sum()), 1))

    seconds = sum(step_seconds)
    audio = sum(p[5] for p in prepared)
    result = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": cpu_model(),
        "hidden": args.hidden,
        "layers": args.layers,
        "conv_channels": args.conv_channels,
        "batch": args.batch,
        "steps": steps,
        "audio_seconds": audio,
        "seconds": seconds,
        "audio_seconds_per_second": audio / seconds,
        "step_seconds": step_seconds,
        "mean_loss_first": losses[0],
        "mean_loss_last": losses[-1],
        "skipped_steps": skipped,
        "params": n_params,
        "featurize_seconds": feat_seconds,
    }
    text = json.dumps(result)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
