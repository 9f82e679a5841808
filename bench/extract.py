"""Extraction overhead and memory.

1. Wall time of `core.extract` (hooks, pooling and store writes included) on
   minilm / demo:sentences / mean pooling / all layers, against a bare loop of
   `model(**batch, output_hidden_states=True)` over the same batches on the same
   device, measured in this run. Target: ratio <= 1.15.
2. Peak RSS of a per-token extraction of 20,000 sentences from minilm (a
   child process, so the figure is its own). Target: <= 2 GB.

    python bench/extract.py [--repeats 3] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import core  # noqa: E402
from core.extract.feeders import TextFeeder  # noqa: E402
from results import result  # noqa: E402

BATCH_SIZE = 32


def bare_loop(model, batches) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model.module(**batch, output_hidden_states=True)
    return time.perf_counter() - start


def layerscope(model, data) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        core.extract(model, data, layers="all", pooling="mean", batch_size=BATCH_SIZE, store=core.Store(folder))
        return time.perf_counter() - start


def time_ratio(repeats: int) -> None:
    model = core.load_model("minilm")
    data = core.load_dataset("demo:sentences")
    # the very tensors Layerscope feeds the model: sorted by length, right-padded
    feeder = TextFeeder(model, data.texts, model.max_length)
    order = np.argsort(-feeder.lengths, kind="stable")
    batches = [feeder.batch(order[i : i + BATCH_SIZE])[0] for i in range(0, len(order), BATCH_SIZE)]
    bare_loop(model, batches[:2])  # warm-up
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_loop(model, batches))
        ours.append(layerscope(model, data))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"device: {model.device}, inputs: {len(data)}, batches: {len(batches)} x {BATCH_SIZE}, layers: 7")
    print(f"bare forward loop (output_hidden_states): {b:.2f} s (median of {repeats})")
    print(f"core.extract with store writes:           {o:.2f} s (median of {repeats})")
    print(f"ratio layerscope / bare: {o / b:.3f}   target: <= 1.15")
    result("extraction time layerscope / bare loop", f"{o / b:.3f}", "<= 1.15", o / b <= 1.15)


_MEMORY_CHILD = """
import os, resource, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pandas as pd
import core
base = core.load_dataset("demo:sentences").texts
texts = [f"Note {i // len(base)}: {base[i % len(base)]}" for i in range(20_000)]
folder = sys.argv[1]
pd.DataFrame({"text": texts}).to_csv(os.path.join(folder, "sentences20k.csv"), index=False)
data = core.load_dataset(os.path.join(folder, "sentences20k.csv"))
start = time.perf_counter()
acts = core.extract("minilm", data, layers="all", pooling="tokens", batch_size=64, store=core.Store(os.path.join(folder, "ws")))
elapsed = time.perf_counter() - start
rows, d = acts["encoder.layer.5"].shape
print(f"{rows} token rows x {d} x {len(acts.layer_names)} layers in {elapsed:.1f} s")
print(f"on disk: {sum(p.stat().st_size for p in acts.path.rglob('*')) / 2**30:.2f} GiB")
"""


def peak_memory() -> None:
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_MEMORY_CHILD), folder], capture_output=True, text=True
        )
        if child.returncode != 0:
            print(child.stderr[-3000:])
            raise SystemExit("memory benchmark failed")
        print(child.stdout.strip())
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak RSS, per-token extraction of 20,000 sentences: {peak_kib / 2**20:.2f} GiB   target: <= 2 GB")
    result("peak RSS of a per-token extraction of 20,000 sentences", f"{peak_kib / 2**20:.2f} GiB", "<= 2 GB",
           peak_kib * 1024 <= 2e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    time_ratio(args.repeats)
    if not args.skip_memory:
        peak_memory()


if __name__ == "__main__":
    main()
