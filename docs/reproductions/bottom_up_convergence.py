"""Reproduction: bottom-up convergence (Raghu et al. 2017, SVCCA, Fig. 4) on the bundled digits-mlp series.

The bundled `digits-mlp:series` is digits-mlp (seed 0: 64 -> 128 -> 64 -> 10, Adam, lr 1e-2,
batches of 128, 20 epochs = 300 optimiser steps on all 1,797 demo digits) saved at 22
log-spaced steps. Every checkpoint is extracted on the same 1,797 digits; each layer's SVCCA
(99% variance) and linear CKA to the same layer of the final checkpoint are computed across
training. A layer "converges" at the first checkpoint from which its similarity stays at or
above 0.9 of its final value (the final value is the final checkpoint with itself, 1).
Raghu et al. report that lower layers converge first.

    python docs/reproductions/bottom_up_convergence.py [--workspace ./workspace]

Writes into docs/reproductions/figures/: the convergence curves as PNG (through core.export)
and the values as CSV, then prints the summary. Everything goes through the store.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.analysis.dynamics import similarity_to_final, steps_to_reach  # noqa: E402
from core.export import figure_bytes  # noqa: E402
from core.figures.dynamics import convergence_curves  # noqa: E402
from core.series import extract_series  # noqa: E402
from core.store import Store, write_bytes_atomic  # noqa: E402

logger = logging.getLogger("bottom_up_convergence")

HERE = Path(__file__).resolve().parent
METRICS = ("svcca", "linear_cka")
FRACTION = 0.9
STEPS_PER_EPOCH = 15  # ceil(1,797 digits / batches of 128)
TRAINED = ("fc1", "relu1", "fc2", "relu2", "logits")  # the pixels layer is the input: the same at every checkpoint


def bottom_up(reached: dict[str, float]) -> bool:
    """True when no trained layer converges before the one below it (ties allowed)."""
    steps = [reached[layer] for layer in TRAINED]
    return all(a <= b for a, b in zip(steps, steps[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="./workspace", help="workspace folder (default ./workspace)")
    parser.add_argument("--out", default=str(HERE / "figures"), help="where figures and CSVs go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    store = Store(args.workspace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    series = extract_series("digits-mlp:series", "demo:digits", store=store)
    logger.info("series %s: %d checkpoints, layers %s", series.key, len(series), ", ".join(series.layers))
    frames, lines = [], []
    for metric in METRICS:
        result = similarity_to_final(store, series, metric, max_points=None)
        reached = steps_to_reach(result, FRACTION)
        fig = convergence_curves(result, fraction=FRACTION, x_axis="checkpoint",
                                 title=f"{result.label}: digits-mlp, 22 checkpoints over 300 steps")
        png, _ = figure_bytes(fig, "png", scale=2)
        write_bytes_atomic(out / f"bottom_up_{metric}.png", png)
        frame = result.to_frame()
        frame.insert(0, "metric", result.label)
        frame["epoch"] = frame["step"] / STEPS_PER_EPOCH
        frames.append(frame)
        lines.append(f"{result.label} (n = {result.params['n']} inputs); converged (stays >= {FRACTION}) at:")
        for j, layer in enumerate(series.layers):
            step = reached[layer]
            early = result.values[series.steps.index("step 4"), j]
            lines.append(f"  {layer:7} step {step:5.0f} = epoch {step / STEPS_PER_EPOCH:5.2f}   "
                         f"(value at step 4: {early:.3f}; at step 0: {result.values[0, j]:.3f})")
        lines.append(f"  bottom-up order over {', '.join(TRAINED)}: {'holds' if bottom_up(reached) else 'does NOT hold'}")
    pd.concat(frames, ignore_index=True).to_csv(out / "bottom_up_convergence.csv", index=False, float_format="%.6g")
    print("\n".join(lines))
    return 0 if np.isfinite(frames[0]["value"]).any() else 1


if __name__ == "__main__":
    raise SystemExit(main())
