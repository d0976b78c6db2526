#!/usr/bin/env python3
"""PyTorch baseline: training throughput of the Zaremba et al. (2014) PTB word LM.

Model (PyTorch word_language_model layout, untied):
    Embedding(V, H) -> Dropout(p) -> nn.LSTM(H, H, layers, dropout=p between layers)
    -> Dropout(p) -> Linear(H, V)
Training: batch 20, bptt 35, truncated BPTT with the (h, c) state carried across
batches and detached, objective J = mean CE over the batch*bptt tokens * bptt
(TF PTB tutorial convention), clip_grad_norm_(params, 5.0), plain SGD lr 1.0.
All parameters are initialised U(-init, init).

Vocabulary: built from ptb.train.txt in first-appearance order, with <eos>
appended at each line end (as in pytorch/examples word_language_model).

Only the --steps timed steps (after --warmup untimed ones) are measured, with
time.perf_counter(); with --device cuda the steps are synchronized before the clock is read
(cuDNN's LSTM, as GPU users train it).

Usage (from the repo root):
    .venv/bin/python bench/pytorch_train_throughput.py --hidden 200 --steps 50 --threads 2 --json
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 20
BPTT = 35
LR = 1.0
CLIP = 5.0


def load_train(data_dir):
    path = os.path.join(data_dir, "ptb.train.txt")
    word2idx = {}
    ids = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            for w in line.split() + ["<eos>"]:
                idx = word2idx.get(w)
                if idx is None:
                    idx = word2idx[w] = len(word2idx)
                ids.append(idx)
    return torch.tensor(ids, dtype=torch.int64), len(word2idx)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()  # [N/bsz, bsz]


class ZarembaLm(nn.Module):
    def __init__(self, vocab, hidden, layers, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, hidden)
        self.rnn = nn.LSTM(hidden, hidden, num_layers=layers,
                           dropout=dropout if layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden, vocab)
        self.layers, self.hidden = layers, hidden

    def init_weights(self, r):
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-r, r)

    def zero_state(self, bsz):
        z = torch.zeros(self.layers, bsz, self.hidden, device=self.decoder.weight.device)
        return (z, z.clone())

    def forward(self, inp, state):
        emb = self.drop(self.encoder(inp))
        out, state = self.rnn(emb, state)
        return self.decoder(self.drop(out)), state


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "ptb"),
                    help="directory with ptb.train.txt (relative paths are relative to the repo root)")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--init", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=50, help="number of timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N]")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data_dir = args.data_dir if os.path.isabs(args.data_dir) else os.path.join(REPO, args.data_dir)
    train, vocab = load_train(os.path.normpath(data_dir))
    device = torch.device(args.device)
    train = batchify(train, BATCH).to(device)

    model = ZarembaLm(vocab, args.hidden, args.layers, args.dropout)
    model.init_weights(args.init)
    model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=LR)

    n_batches = (train.size(0) - 1) // BPTT  # full-length batches only
    pos = 0
    state = model.zero_state(BATCH)

    def step():
        nonlocal pos, state
        if pos >= n_batches:  # wrap to the start of the data with a fresh state
            pos = 0
            state = model.zero_state(BATCH)
        i = pos * BPTT
        inp, tgt = train[i:i + BPTT], train[i + 1:i + 1 + BPTT]
        pos += 1
        state = (state[0].detach(), state[1].detach())
        opt.zero_grad(set_to_none=True)
        logits, state = model(inp, state)
        loss = F.cross_entropy(logits.view(-1, vocab), tgt.reshape(-1))
        (loss * BPTT).backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    loss = None
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - t0
    final_loss = float(loss.item()) if loss is not None else float("nan")

    result = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "hidden": args.hidden,
        "layers": args.layers,
        "batch": BATCH,
        "bptt": BPTT,
        "steps": args.steps,
        "seconds": seconds,
        "tokens_per_s": args.steps * BATCH * BPTT / seconds,
        "steps_per_s": args.steps / seconds,
        "final_loss": final_loss,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {torch.__version__}  threads={args.threads} hidden={args.hidden} "
              f"layers={args.layers} dropout={args.dropout} vocab={vocab}")
        print(f"{args.steps} steps in {seconds:.3f}s: {result['tokens_per_s']:.0f} tok/s, "
              f"{result['steps_per_s']:.2f} steps/s, final loss {final_loss:.4f}")


if __name__ == "__main__":
    main()
