"""Reproduction: trajectory curvature and intrinsic dimension by layer, trained vs untrained,
in each convention of the reference code.

SmolLM2-135M-Instruct (bundled) and its re-initialised twin (same architecture, seed 0)
on demo:sentences, every token kept (pooling="tokens"). For each model and layer:

- curvature, signed (Hosseini & Fedorenko 2023; Layerscope's default) and abs with
  zero-length steps counted as 0° (OFSkean/information_flow `compute_curvature`), mean over
  sentences with the interquartile range;
- intrinsic dimension of the mean-pooled sentence vectors, TwoNN (Facco et al. 2017, dadapy
  `compute_id_2NN`, as used by Cheng et al.) with the number of duplicate vectors removed,
  and the maximum-likelihood form;
- checks that are not metrics: every value without each sentence's first token, the count of
  zero-length steps, the median norm of first tokens and of the others, and abs curvature on
  tokens centred and unit-normalised per sentence (what Skean's pipeline feeds
  `compute_curvature`).

    python docs/reproductions/straightening_and_id.py [--workspace ./workspace] [--html]

Writes into docs/reproductions/figures/: curvature and ID figures as PNG (kaleido +
Chromium) and the numbers as CSV, then prints the tables as Markdown. `--html` adds
standalone HTML figures (plotly.js inline, about 5 MB each, open offline); without Chromium
the HTML is written instead of the PNG. Everything goes through the store: a second run
reads it back.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd

import core
from core.analysis.geometry import (
    GeometryResult,
    curvature_per_input,
    geometry_by_layer,
    intrinsic_dimension,
)
from core.figures.depth import curve
from core.figures.geometry import depth_axis, geometry_curves, metric_variant
from core.figures.style import color_for
from core.store import Store

logger = logging.getLogger("straightening_and_id")

HERE = Path(__file__).resolve().parent
MODEL, DATASET = "smollm2", "demo:sentences"
TRAINED, UNTRAINED = "trained", "untrained, seed {seed}"
# convention -> (metric, geometry options); the first of each metric is Layerscope's default
CONVENTIONS: dict[str, tuple[str, dict]] = {
    "signed": ("curvature", {}),
    "abs_zero": ("curvature", {"curvature_variant": "abs", "curvature_degenerate": "zero"}),
    "twonn": ("intrinsic_dimension", {}),
    "mle": ("intrinsic_dimension", {"id_method": "mle"}),
}


def progress_reporter(what: str) -> Callable[[int, int, str], None]:
    """progress(done, total, message) that logs at most every 10 s."""
    last = [0.0]

    def report(done: int, total: int, message: str) -> None:
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            logger.info("%s: %d/%d %s", what, done, total, message)

    return report


def tokens_run(model_name: str, *, reinit: bool, seed: int, store: Store, device: str | None, label: str):
    """The pooling="tokens" run of `model_name` on demo:sentences (extracted once, then read back)."""
    start = time.time()
    model = core.load_model(model_name, reinit=reinit, seed=seed, device=device, workspace=store.root)
    acts = core.extract(model, core.load_dataset(DATASET), layers="all", pooling="tokens", store=store,
                        progress=progress_reporter(f"extract {label}"))
    seconds = time.time() - start
    logger.info("%s: run %s (%d inputs, %d tokens, %d layers) in %.0f s", label, acts.key, acts.n_inputs,
                int(acts.offsets[-1]), len(acts.layer_names), seconds)
    info = {"run": acts.key, "n_inputs": acts.n_inputs, "n_tokens": int(acts.offsets[-1]),
            "min_tokens": int(acts.lengths.min()), "weights": model.weights_hash, "extract_s": round(seconds, 1)}
    return acts, info


def measure(acts, *, seed: int, store: Store, label: str) -> tuple[dict[str, GeometryResult], dict]:
    """Every convention's GeometryResult for one run, and the checks (`checks`)."""
    results, seconds = {}, {}
    for name, (metric, options) in CONVENTIONS.items():
        start = time.time()
        results[name] = geometry_by_layer(acts, (metric,), store=store, seed=seed,
                                          progress=progress_reporter(f"{name} {label}"), **options)
        seconds[name] = round(time.time() - start, 1)
    start = time.time()
    extra = checks(acts)
    seconds["checks"] = round(time.time() - start, 1)
    logger.info("%s: geometry %s s", label, seconds)
    return results, {"checks": extra, "seconds": seconds}


def per_input_normalised(X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n_tokens, d) each input's tokens centred on their mean and scaled to unit norm.

    What OFSkean/information_flow `compute_per_forward_pass` does (`normalize`) before it
    computes curvature or prompt entropy.
    """
    lengths = np.diff(offsets)
    means = np.add.reduceat(X, offsets[:-1], axis=0) / lengths[:, None]  # (n_inputs, d)
    centred = X - np.repeat(means, lengths, axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def checks(acts) -> dict[str, np.ndarray]:
    """(L,) per layer: zero-length steps, the median norm of first tokens and of the others,
    signed curvature (degrees) and TwoNN ID without each input's first token, abs curvature
    (degrees) on per-input normalised tokens.

    Not metrics. Trained LLMs put "massive activations" (norms in the tens of thousands) on
    the first token, the attention sink; they could dominate the first step of every
    trajectory and, through the token mean, the pooled vectors.
    """
    offsets, lengths = acts.offsets, acts.lengths
    keep = np.ones(int(offsets[-1]), dtype=bool)
    keep[offsets[:-1]] = False
    shifted = offsets - np.arange(len(offsets))  # each input loses one row
    same_input = np.ones(int(offsets[-1]) - 1, dtype=bool)
    same_input[offsets[1:-1] - 1] = False  # the step from one input's last token to the next input
    out: dict[str, list[float]] = {k: [] for k in ("zero_steps", "curvature_deg", "intrinsic_dimension",
                                                   "abs_normalised_deg", "first_norm", "other_norm")}
    for layer in acts.layer_names:
        X = np.asarray(acts[layer], dtype=np.float64)  # (n_tokens, d)
        steps = np.linalg.norm(np.diff(X, axis=0), axis=1)
        out["zero_steps"].append(float(np.sum((steps == 0) & same_input)))
        out["first_norm"].append(float(np.median(np.linalg.norm(X[offsets[:-1]], axis=1))))
        out["other_norm"].append(float(np.median(np.linalg.norm(X[keep], axis=1))))
        per_input, _ = curvature_per_input(X[keep], shifted)
        out["curvature_deg"].append(float(np.degrees(np.nanmean(per_input))))
        sums = np.add.reduceat(X, offsets[:-1], axis=0)  # (n_inputs, d)
        out["intrinsic_dimension"].append(intrinsic_dimension((sums - X[offsets[:-1]]) / (lengths[:, None] - 1)))
        skean, _ = curvature_per_input(per_input_normalised(X, offsets), offsets, variant="abs", degenerate="zero")
        out["abs_normalised_deg"].append(float(np.degrees(np.mean(skean))))
    return {k: np.array(v) for k, v in out.items()}


def duplicates(result: GeometryResult) -> np.ndarray:
    """(L,) duplicate pooled vectors removed before the ID (NaN if the result does not say)."""
    if result.n_duplicates is None:
        return np.full(len(result.layer_names), np.nan)
    return np.asarray(result.n_duplicates, dtype=float)


def table(measured: dict[str, tuple[dict[str, GeometryResult], dict]]) -> pd.DataFrame:
    """One row per model x layer: every convention's value, spreads, skips and the checks."""
    frames = []
    for model, (r, info) in measured.items():
        n = len(r["signed"].layer_names)
        c = info["checks"]
        deg = {name: np.degrees(r[name].mean["curvature"]) for name in ("signed", "abs_zero")}
        frames.append(pd.DataFrame({
            "model": model,
            "layer_index": np.arange(n),
            "layer": r["signed"].layer_names,
            "relative_depth": depth_axis(n, relative_depth=True).round(4),
            "curvature_signed_deg": deg["signed"].round(3),
            "curvature_signed_deg_q25": np.degrees(r["signed"].q25["curvature"]).round(3),
            "curvature_signed_deg_q75": np.degrees(r["signed"].q75["curvature"]).round(3),
            "curvature_signed_inputs_skipped": r["signed"].n_skipped["curvature"],
            "curvature_abs_zero_deg": deg["abs_zero"].round(3),
            "curvature_abs_zero_deg_q25": np.degrees(r["abs_zero"].q25["curvature"]).round(3),
            "curvature_abs_zero_deg_q75": np.degrees(r["abs_zero"].q75["curvature"]).round(3),
            "curvature_abs_zero_inputs_skipped": r["abs_zero"].n_skipped["curvature"],
            "zero_length_steps": c["zero_steps"].astype(int),
            "first_token_norm_median": c["first_norm"].round(1),
            "other_tokens_norm_median": c["other_norm"].round(1),
            "curvature_abs_zero_deg_per_input_normalised": c["abs_normalised_deg"].round(3),
            "curvature_signed_deg_without_first_token": c["curvature_deg"].round(3),
            "intrinsic_dimension_twonn": r["twonn"].mean["intrinsic_dimension"].round(3),
            "intrinsic_dimension_mle": r["mle"].mean["intrinsic_dimension"].round(3),
            "duplicates_removed": duplicates(r["twonn"]),
            "intrinsic_dimension_twonn_without_first_token": c["intrinsic_dimension"].round(3),
        }))
    return pd.concat(frames, ignore_index=True)


def markdown_table(frame: pd.DataFrame, columns: dict[str, str], formats: dict[str, str]) -> str:
    """The columns of `frame` (name -> header) as a Markdown table, numbers in `formats`."""
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [format(row[c], formats[c]) if c in formats else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_figure(fig, stem: Path, html: bool) -> list[str]:
    """PNG via kaleido when a Chromium is available; standalone HTML when asked or when the PNG fails."""
    written = []
    try:
        fig.write_image(stem.with_suffix(".png"), width=900, height=560, scale=2)
        written.append(stem.with_suffix(".png").name)
    except Exception as err:  # noqa: BLE001 - kaleido or Chromium missing (many error types): write the HTML, say so
        logger.warning("PNG export of %s failed (%s); writing the HTML instead", stem.name, err)
        html = True
    if html:
        fig.write_html(stem.with_suffix(".html"), include_plotlyjs=True)
        written.append(stem.with_suffix(".html").name)
    return written


def legend_name(model: str, result: GeometryResult, metric: str) -> str:
    """"model · convention": the variant as `metric_variant` names it, plus the degenerate-step rule."""
    variant = metric_variant(result, metric) or ""
    if metric == "curvature" and result.params.get("curvature_degenerate") == "zero" and "zero" not in variant:
        variant += ", zero-length step = 0°"
    return f"{model} · {variant}" if variant else model


def figures(measured, frame: pd.DataFrame, trained: str, untrained: str, out: Path, html: bool) -> list[str]:
    """Signed curvature, abs curvature, and ID (TwoNN and MLE): one figure each, with a check drawn dotted."""
    plan = [
        ("curvature", ("signed",), "curvature_trained_vs_untrained",
         "Curvature by layer, signed (Hosseini & Fedorenko): SmolLM2-135M trained vs re-initialised",
         "curvature_signed_deg_without_first_token", "signed, first token left out (check)"),
        ("curvature", ("abs_zero",), "curvature_abs_trained_vs_untrained",
         "Curvature by layer, abs (Skean et al.): SmolLM2-135M trained vs re-initialised",
         "curvature_abs_zero_deg_per_input_normalised", "abs, tokens centred + unit-normalised per sentence (check)"),
        ("intrinsic_dimension", ("twonn", "mle"), "intrinsic_dimension_trained_vs_untrained",
         "Intrinsic dimension by layer, TwoNN and MLE: SmolLM2-135M trained vs re-initialised",
         "intrinsic_dimension_twonn_without_first_token", "TwoNN, first token left out (check)"),
    ]
    rows = frame[frame.model == trained]
    written = []
    for metric, conventions, stem, title, check, check_name in plan:
        curves, controls = {}, []
        for model, (r, _) in measured.items():
            for name in conventions:
                key = legend_name(f"smollm2 {model}", r[name], metric)
                curves[key] = r[name]
                if model == untrained:
                    controls.append(key)
        fig = geometry_curves(curves, metric, relative_depth=True, controls=controls, title=title, publication=True)
        fig.add_trace(curve(rows["relative_depth"], rows[check], name=f"smollm2 {trained} · {check_name}",
                            color=color_for(len(curves)), dash="dot", marker={"size": 5}))
        written += save_figure(fig, out / stem, html)
    return written


def summary(frame: pd.DataFrame) -> list[str]:
    """One line per model and convention: first, lowest/highest, last."""
    lines = []
    for model, rows in frame.groupby("model", sort=False):
        depth = rows["relative_depth"].to_numpy()
        for column, unit in (("curvature_signed_deg", "°"), ("curvature_abs_zero_deg", "°"),
                             ("curvature_abs_zero_deg_per_input_normalised", "°"),
                             ("intrinsic_dimension_twonn", ""), ("intrinsic_dimension_mle", ""),
                             ("intrinsic_dimension_twonn_without_first_token", "")):
            v = rows[column].to_numpy(dtype=float)
            lo, hi = int(np.nanargmin(v[1:])) + 1, int(np.nanargmax(v))
            lines.append(f"{model} · {column}: {v[0]:.1f}{unit} (embeddings), min after them {v[lo]:.1f}{unit} "
                         f"at depth {depth[lo]:.2f}, max {v[hi]:.1f}{unit} at depth {depth[hi]:.2f}, "
                         f"{v[-1]:.1f}{unit} (last)")
        dup = rows["duplicates_removed"].to_numpy(dtype=float)
        lines.append(f"{model} · duplicates removed before the ID: {np.nansum(dup):.0f} over all layers; "
                     f"zero-length steps: {rows['zero_length_steps'].sum()} over all layers")
        ratio = rows["first_token_norm_median"].to_numpy() / rows["other_tokens_norm_median"].to_numpy()
        i = int(np.argmax(ratio))
        lines.append(f"{model} · median norm, first token / other tokens: largest {ratio[i]:.0f}x at "
                     f"{rows['layer'].iloc[i]} ({rows['first_token_norm_median'].iloc[i]:.0f} / "
                     f"{rows['other_tokens_norm_median'].iloc[i]:.0f})")
        for a, b in (("curvature_abs_zero_deg", "curvature_abs_zero_deg_per_input_normalised"),
                     ("intrinsic_dimension_twonn", "intrinsic_dimension_mle")):
            gap = rows[a].to_numpy(dtype=float) - rows[b].to_numpy(dtype=float)
            i = int(np.nanargmax(np.abs(gap)))
            lines.append(f"{model} · {a} - {b}: from {np.nanmin(gap):+.2f} to {np.nanmax(gap):+.2f}, "
                         f"largest at depth {depth[i]:.2f}")
    return lines


def print_tables(frame: pd.DataFrame, trained: str, untrained: str) -> None:
    """The page's two tables, trained and untrained side by side, as Markdown."""
    t = frame[frame.model == trained].reset_index(drop=True)
    u = frame[frame.model == untrained].reset_index(drop=True)
    both = pd.DataFrame({
        "layer": [f"{i} · `{name}`" for i, name in zip(t.layer_index, t.layer)],
        "depth": t.relative_depth,
        "signed_t": [f"{m:.1f} ({a:.1f}–{b:.1f})" for m, a, b in
                     zip(t.curvature_signed_deg, t.curvature_signed_deg_q25, t.curvature_signed_deg_q75)],
        "signed_u": [f"{m:.1f} ({a:.1f}–{b:.1f})" for m, a, b in
                     zip(u.curvature_signed_deg, u.curvature_signed_deg_q25, u.curvature_signed_deg_q75)],
        "abs_t": t.curvature_abs_zero_deg, "abs_u": u.curvature_abs_zero_deg,
        "abs_norm_t": t.curvature_abs_zero_deg_per_input_normalised,
        "signed_nf_t": t.curvature_signed_deg_without_first_token,
        "twonn_t": t.intrinsic_dimension_twonn, "twonn_u": u.intrinsic_dimension_twonn,
        "mle_t": t.intrinsic_dimension_mle, "mle_u": u.intrinsic_dimension_mle,
        "dup_t": t.duplicates_removed, "dup_u": u.duplicates_removed,
        "twonn_nf_t": t.intrinsic_dimension_twonn_without_first_token,
    })
    f1, f0 = ".1f", ".0f"
    print(markdown_table(both, {
        "layer": "layer", "depth": "depth",
        "signed_t": "signed ° trained (IQR)", "signed_u": "signed ° untrained (IQR)",
        "abs_t": "abs ° trained", "abs_u": "abs ° untrained", "abs_norm_t": "abs ° trained, per-sentence normalised",
        "signed_nf_t": "signed ° trained, no 1st token",
    }, {"depth": ".2f", "abs_t": f1, "abs_u": f1, "abs_norm_t": f1, "signed_nf_t": f1}))
    print()
    print(markdown_table(both, {
        "layer": "layer", "depth": "depth", "twonn_t": "TwoNN trained", "twonn_u": "TwoNN untrained",
        "mle_t": "MLE trained", "mle_u": "MLE untrained", "dup_t": "duplicates trained",
        "dup_u": "duplicates untrained", "twonn_nf_t": "TwoNN trained, no 1st token",
    }, {"depth": ".2f", "twonn_t": f1, "twonn_u": f1, "mle_t": f1, "mle_u": f1, "dup_t": f0, "dup_u": f0,
        "twonn_nf_t": f1}))


def main(argv: Sequence[str] | None = None) -> int:
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
    measured, infos = {}, {}
    for label, reinit in ((TRAINED, False), (untrained, True)):
        acts, infos[label] = tokens_run(MODEL, reinit=reinit, seed=args.seed, store=store, device=args.device,
                                        label=label)
        measured[label] = measure(acts, seed=args.seed, store=store, label=label)

    frame = table(measured)
    frame.to_csv(out / "straightening_and_id.csv", index=False)
    written = ["straightening_and_id.csv", *figures(measured, frame, TRAINED, untrained, out, args.html)]

    print_tables(frame, TRAINED, untrained)
    print()
    for label, info in infos.items():
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in info.items())
              + f", geometry seconds={measured[label][1]['seconds']}")
    print("\n".join(summary(frame)))
    print(f"\nwrote to {out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
