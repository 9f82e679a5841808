"""Reproduction: trajectory curvature and intrinsic dimension by layer, trained vs untrained.

SmolLM2-135M-Instruct (bundled) and its re-initialised twin (same architecture, seed 0)
on demo:sentences, every token kept (pooling="tokens"). For each model and layer:
mean trajectory curvature over sentences with its interquartile range (Hosseini &
Fedorenko 2023, signed form) and the TwoNN intrinsic dimension of the mean-pooled
sentence vectors (Facco et al. 2017, as used by Cheng et al. 2024).

    python docs/reproductions/straightening_and_id.py [--workspace ./workspace]

Writes into docs/reproductions/figures/: curvature and ID figures as PNG (kaleido +
Chromium) and the numbers as CSV, then prints the table. `--html` adds standalone HTML
figures (plotly.js inline, about 5 MB each, open offline); without Chromium the HTML is
written instead of the PNG. Everything goes through the store: a second run reads it back.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import core  # noqa: E402
from core.analysis.geometry import (  # noqa: E402
    GeometryResult,
    curvature_per_input,
    geometry_by_layer,
    intrinsic_dimension,
)
from core.figures.geometry import depth_axis, geometry_curves  # noqa: E402
from core.store import Store  # noqa: E402

logger = logging.getLogger("straightening_and_id")

HERE = Path(__file__).resolve().parent
DATASET = "demo:sentences"
METRICS = ("curvature", "intrinsic_dimension")
TRAINED, UNTRAINED = "smollm2 (trained)", "smollm2 (untrained, seed {seed})"


def _progress(what: str):
    last = [0.0]

    def report(done: int, total: int, message: str) -> None:
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            logger.info("%s: %d/%d %s", what, done, total, message)

    return report


def measure(name: str, *, reinit: bool, seed: int, store: Store, device: str | None) -> tuple[GeometryResult, dict]:
    """Extract (or read) the tokens run and compute curvature + ID for every layer."""
    model = core.load_model("smollm2", reinit=reinit, seed=seed, device=device, workspace=store.root)
    dataset = core.load_dataset(DATASET)
    start = time.time()
    acts = core.extract(model, dataset, layers="all", pooling="tokens", store=store,
                        progress=_progress(f"extract {name}"))
    logger.info("%s: run %s (%d inputs, %d tokens, %d layers) in %.0f s", name, acts.key, acts.n_inputs,
                int(acts.offsets[-1]), len(acts.layer_names), time.time() - start)
    start = time.time()
    result = geometry_by_layer(acts, METRICS, store=store, seed=seed, progress=_progress(f"geometry {name}"))
    logger.info("%s: geometry in %.0f s", name, time.time() - start)
    checks = without_first_token(acts)
    info = {"run": acts.key, "n_inputs": acts.n_inputs, "n_tokens": int(acts.offsets[-1]),
            "min_tokens": int(acts.lengths.min()), "weights": model.weights_hash,
            "without_first_token": checks}
    return result, info


def without_first_token(acts) -> dict[str, np.ndarray]:
    """(L,) curvature (degrees) and TwoNN ID of the token mean, each input's first token left out.

    A check, not a metric: trained LLMs put "massive activations" (norms in the tens of
    thousands) on the first token, the attention sink. They could dominate the first step
    of every trajectory and, through the token mean, the pooled vectors.
    """
    offsets, lengths = acts.offsets, acts.lengths
    keep = np.ones(int(offsets[-1]), dtype=bool)
    keep[offsets[:-1]] = False
    shifted = offsets - np.arange(len(offsets))  # each input loses one row
    curv, ident = [], []
    for layer in acts.layer_names:
        X = np.asarray(acts[layer], dtype=np.float64)  # (n_tokens, d)
        per_input, _ = curvature_per_input(X[keep], shifted)
        curv.append(float(np.degrees(np.nanmean(per_input))))
        sums = np.add.reduceat(X, offsets[:-1], axis=0)  # (n_inputs, d)
        ident.append(intrinsic_dimension((sums - X[offsets[:-1]]) / (lengths[:, None] - 1)))
    return {"curvature_deg": np.array(curv), "intrinsic_dimension": np.array(ident)}


def table(results: dict[str, GeometryResult], infos: dict[str, dict]) -> pd.DataFrame:
    """One row per model x layer: curvature in degrees (mean, q25, q75, skipped) and TwoNN ID,
    each also without the first token (see `without_first_token`)."""
    frames = []
    for name, r in results.items():
        n = len(r.layer_names)
        checks = infos[name]["without_first_token"]
        frames.append(pd.DataFrame({
            "model": name,
            "layer_index": np.arange(n),
            "layer": r.layer_names,
            "relative_depth": depth_axis(n, relative_depth=True).round(4),
            "curvature_deg": np.degrees(r.mean["curvature"]).round(3),
            "curvature_deg_q25": np.degrees(r.q25["curvature"]).round(3),
            "curvature_deg_q75": np.degrees(r.q75["curvature"]).round(3),
            "curvature_inputs_skipped": r.n_skipped["curvature"],
            "curvature_deg_without_first_token": checks["curvature_deg"].round(3),
            "intrinsic_dimension_twonn": np.asarray(r.mean["intrinsic_dimension"]).round(3),
            "intrinsic_dimension_without_first_token": checks["intrinsic_dimension"].round(3),
        }))
    return pd.concat(frames, ignore_index=True)


def save_figure(fig, stem: Path, html: bool) -> list[str]:
    """PNG via kaleido when a Chromium is available; standalone HTML when asked or when the PNG fails."""
    written = []
    try:
        fig.write_image(stem.with_suffix(".png"), width=900, height=560, scale=2)
        written.append(stem.with_suffix(".png").name)
    except Exception as err:  # kaleido or Chromium missing: write the HTML instead, say so
        logger.warning("PNG export of %s failed (%s); writing the HTML instead", stem.name, err)
        html = True
    if html:
        fig.write_html(stem.with_suffix(".html"), include_plotlyjs=True)
        written.append(stem.with_suffix(".html").name)
    return written


def summary(results: dict[str, GeometryResult]) -> list[str]:
    lines = []
    for name, r in results.items():
        curv = np.degrees(r.mean["curvature"])
        ident = np.asarray(r.mean["intrinsic_dimension"])
        peak = int(np.nanargmax(ident))
        low = int(np.nanargmin(curv[1:])) + 1  # after the embeddings
        lines.append(
            f"{name}: curvature {curv[0]:.1f}° (embeddings) -> {curv[1]:.1f}° (block 0) -> min {curv[low]:.1f}° "
            f"at layer {low} ({low / (len(curv) - 1):.2f} depth) -> {curv[-1]:.1f}° (last); "
            f"ID {ident[0]:.1f} (embeddings), peak {ident[peak]:.1f} at layer {peak} "
            f"({peak / (len(ident) - 1):.2f} depth), {ident[-1]:.1f} (last)"
        )
        for metric in METRICS:
            if r.reasons.get(metric):
                lines.append(f"  {metric}: {r.reasons[metric]}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="./workspace", help="workspace folder (default ./workspace)")
    parser.add_argument("--out", default=str(HERE / "figures"), help="where figures and the CSV go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-initialised twin and the ID subsample")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    parser.add_argument("--html", action="store_true", help="also write standalone HTML figures (~5 MB each)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)  # our progress only: kaleido and Chromium log a lot at INFO
    store = Store(args.workspace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    untrained = UNTRAINED.format(seed=args.seed)
    results, infos = {}, {}
    for name, reinit in ((TRAINED, False), (untrained, True)):
        results[name], infos[name] = measure(name, reinit=reinit, seed=args.seed, store=store, device=args.device)

    frame = table(results, infos)
    frame.to_csv(out / "straightening_and_id.csv", index=False)
    written = ["straightening_and_id.csv"]
    titles = {
        "curvature": "Trajectory curvature by layer: SmolLM2-135M trained vs re-initialised (demo:sentences)",
        "intrinsic_dimension": "Intrinsic dimension (TwoNN) by layer: SmolLM2-135M trained vs re-initialised",
    }
    for metric in METRICS:
        fig = geometry_curves(results, metric, relative_depth=True, controls=[untrained], title=titles[metric],
                              publication=True)
        written += save_figure(fig, out / f"{metric}_trained_vs_untrained", args.html)

    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 200)
    print(frame.to_string(index=False))
    print()
    for name, info in infos.items():
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "without_first_token"))
    print("\n".join(summary(results)))
    print(f"\nwrote to {out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
