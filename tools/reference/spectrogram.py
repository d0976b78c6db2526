#!/usr/bin/env python3
"""Reference DeepSpeech2 spectrogram in numpy (librosa.stft(center=True, pad_mode='reflect') with
scipy's symmetric Hamming window, as deepspeech.pytorch computed it in 2018), written as the
fixture crates/speech/tests/fixtures/spectrogram.json for crates/speech/tests/reference.rs.

The signal is a formula both sides compute: a 440 Hz -> 3 kHz chirp plus two tones, 4000 samples
at 16 kHz, rounded to 16-bit steps as a WAV file would hold it.

Usage: .venv/bin/python tools/reference/spectrogram.py   (needs numpy)
"""
import json
import os

import numpy as np

RATE, N, WINDOW, HOP = 16000, 4000, 320, 160


def signal():
    t = np.arange(N, dtype=np.float64) / RATE
    chirp = np.sin(2 * np.pi * (440 * t + 0.5 * (3000 - 440) / (N / RATE) * t * t))
    x = 0.4 * chirp + 0.2 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 5500 * t)
    return np.round(x * 32767) / 32768.0


def spectrogram(x):
    pad = WINDOW // 2
    y = np.pad(x, pad, mode="reflect")
    frames = 1 + len(x) // HOP
    w = np.hamming(WINDOW)
    rows = [np.abs(np.fft.rfft(y[f * HOP:f * HOP + WINDOW] * w)) for f in range(frames)]
    s = np.log1p(np.array(rows))
    return (s - s.mean()) / s.std(ddof=1)


def main():
    s = spectrogram(signal())
    out = os.path.join(os.path.dirname(__file__), "../../crates/speech/tests/fixtures/spectrogram.json")
    with open(out, "w") as f:
        json.dump({"frames": s.shape[0], "bins": s.shape[1],
                   "values": [round(float(v), 6) for v in s.ravel()]}, f)
    print(f"wrote {out}: {s.shape}")


if __name__ == "__main__":
    main()
