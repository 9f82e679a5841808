"""Reproduction: dataset and prompt entropy by layer (Skean et al.), exact and "skean" variants.

SmolLM2-135M-Instruct (bundled, causal), its re-initialised twin (seed 0) and MiniLM-L6
(bundled sentence encoder, BERT) on demo:sentences, every token kept (pooling="tokens").
For each model and layer, with alpha = 1 and normalised by log(min(N, D)):

- dataset entropy: matrix entropy of one vector per sentence, the mean of its tokens;
- prompt entropy: matrix entropy over each sentence's tokens, mean over sentences with the
  interquartile range (as OFSkean/information_flow `compute_per_forward_pass`);

each with `variant="exact"` (Layerscope's default) and `variant="skean"` (Gram entries
clamped at 0 before the eigendecomposition, as their `compute_entropy`). Checks that are not
metrics: both entropies with each sentence's first token left out, and the dataset entropy
computed end to end as their `compute_on_concatenated_passes` does (a port: tokens
normalised per sentence before the mean, the means not centred again).

    python docs/reproductions/skean_entropy.py [--workspace ./workspace] [--html]

Writes into docs/reproductions/figures/: the two figures as PNG (kaleido + Chromium) and
the numbers as CSV, then prints the tables as Markdown. Runs are shared with
straightening_and_id.py: a second run reads everything back from the store.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd

from core.analysis.geometry import GeometryResult, geometry_by_layer, matrix_entropy, prompt_entropy
from core.figures.depth import curve
from core.figures.geometry import depth_axis, geometry_curves, metric_variant
from core.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightening_and_id import markdown_table, per_input_normalised, progress_reporter, save_figure, tokens_run

logger = logging.getLogger("skean_entropy")

HERE = Path(__file__).resolve().parent
# legend name -> (bundled model, re-initialised)
MODELS = {"smollm2 trained": ("smollm2", False), "smollm2 untrained, seed {seed}": ("smollm2", True),
          "minilm": ("minilm", False)}
VARIANTS = ("exact", "skean")  # Layerscope's default; OFSkean/information_flow's (Gram entries clamped at 0)
METRICS = ("dataset_entropy", "prompt_entropy")
CHECK_COLOR = "#000000"  # the first-token check, dotted: apart from the palette of the curves
REFERENCE_COLOR = "#7f7f7f"  # the reference pipeline's dataset entropy, dash-dot


def measure(acts, *, seed: int, store: Store, label: str) -> tuple[dict[str, GeometryResult], dict]:
    """Both variants' GeometryResult for one run, and the dataset entropy without the first token."""
    results, seconds = {}, {}
    for variant in VARIANTS:
        start = time.time()
        results[variant] = geometry_by_layer(acts, METRICS, store=store, seed=seed, entropy_variant=variant,
                                             progress=progress_reporter(f"{variant} {label}"))
        seconds[variant] = round(time.time() - start, 1)
    start = time.time()
    check = without_first_token(acts)
    check["dataset_entropy_reference_pipeline"] = reference_pipeline(acts)
    seconds["checks"] = round(time.time() - start, 1)
    logger.info("%s: entropy %s s", label, seconds)
    return results, {"checks": check, "seconds": seconds}


def without_first_token(acts) -> dict[str, np.ndarray]:
    """(L,) dataset entropy and mean prompt entropy, each input's first token left out, per variant.

    A check, not a metric: trained causal LMs put "massive activations" on the first token
    (the attention sink). Through the token mean it can fill one direction of every pooled
    vector, and through the centring of a prompt's tokens every other token points away from
    it; a matrix entropy then measures mostly that one direction.
    """
    offsets, lengths = acts.offsets, acts.lengths
    keep = np.ones(int(offsets[-1]), dtype=bool)
    keep[offsets[:-1]] = False
    shifted = offsets - np.arange(len(offsets))  # each input loses one row
    out: dict[str, list[float]] = {f"{m}_{v}": [] for m in METRICS for v in VARIANTS}
    for layer in acts.layer_names:
        X = np.asarray(acts[layer], dtype=np.float64)  # (n_tokens, d)
        sums = np.add.reduceat(X, offsets[:-1], axis=0)  # (n_inputs, d)
        pooled = (sums - X[offsets[:-1]]) / (lengths[:, None] - 1)
        for variant in VARIANTS:
            out[f"dataset_entropy_{variant}"].append(matrix_entropy(pooled, variant=variant))
            out[f"prompt_entropy_{variant}"].append(float(np.nanmean(prompt_entropy(X[keep], shifted,
                                                                                    variant=variant))))
    return {k: np.array(values) for k, values in out.items()}


def reference_pipeline(acts) -> np.ndarray:
    """(L,) dataset entropy computed end to end as OFSkean/information_flow does (a port, for comparison).

    `compute_on_concatenated_passes`: each prompt's tokens centred on their mean and unit-normalised
    (`normalize`), then averaged; `compute_entropy` on the stacked averages as they are (neither
    centred nor normalised again): Gram on the smaller side, clamped at 0, divided by its trace,
    Shannon entropy of its positive eigenvalues (repitl), divided by min(log N, log D).
    """
    offsets, lengths = acts.offsets, acts.lengths
    values = []
    for layer in acts.layer_names:
        X = per_input_normalised(np.asarray(acts[layer], dtype=np.float64), offsets)  # (n_tokens, d)
        H = np.add.reduceat(X, offsets[:-1], axis=0) / lengths[:, None]  # (N, D)
        n, d = H.shape
        gram = np.clip(H.T @ H if n > d else H @ H.T, 0.0, None)
        eig = np.linalg.eigvalsh(gram / np.trace(gram))
        p = eig[eig > 0] / eig[eig > 0].sum()
        values.append(float(-(p * np.log(p)).sum() / min(np.log(n), np.log(d))))
    return np.array(values)


def table(measured: dict[str, tuple[dict[str, GeometryResult], dict]]) -> pd.DataFrame:
    """One row per model x layer: both metrics in both variants, prompt-entropy spread, the check."""
    frames = []
    for model, (r, info) in measured.items():
        n = len(r["exact"].layer_names)
        columns = {"model": model, "layer_index": np.arange(n), "layer": r["exact"].layer_names,
                   "relative_depth": depth_axis(n, relative_depth=True).round(4)}
        for variant, result in r.items():
            columns[f"dataset_entropy_{variant}"] = result.mean["dataset_entropy"].round(4)
            columns[f"prompt_entropy_{variant}"] = result.mean["prompt_entropy"].round(4)
            columns[f"prompt_entropy_{variant}_q25"] = result.q25["prompt_entropy"].round(4)
            columns[f"prompt_entropy_{variant}_q75"] = result.q75["prompt_entropy"].round(4)
            columns[f"prompt_entropy_{variant}_inputs_skipped"] = result.n_skipped["prompt_entropy"]
        for name, values in info["checks"].items():
            suffix = "" if name.endswith("reference_pipeline") else "_without_first_token"
            columns[f"{name}{suffix}"] = values.round(4)
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def legend_name(model: str, result: GeometryResult, metric: str, variant: str) -> str:
    """"model · variant, α=1": the convention as `metric_variant` names it, with the variant even where it is
    the default (which `metric_variant` leaves unnamed)."""
    named = metric_variant(result, metric) or ""
    if variant not in named:
        named = f"{variant}, {named}" if named else variant
    return f"{model} · {named}"


def figures(measured, trained: str, untrained: str, out: Path, html: bool) -> list[str]:
    """Dataset entropy and prompt entropy against relative depth, every model and variant."""
    titles = {
        "dataset_entropy": "Dataset entropy by layer (token-mean sentence vectors, demo:sentences)",
        "prompt_entropy": "Prompt entropy by layer (tokens of each sentence, mean over sentences)",
    }
    stems = {"dataset_entropy": "entropy_dataset_by_layer", "prompt_entropy": "entropy_prompt_by_layer"}
    written = []
    for metric in METRICS:
        curves, controls = {}, []
        for model, (r, _) in measured.items():
            for variant, result in r.items():
                key = legend_name(model, result, metric, variant)
                curves[key] = result
                if model == untrained:
                    controls.append(key)
        fig = geometry_curves(curves, metric, relative_depth=True, controls=controls, title=titles[metric],
                              publication=True)
        rows = table({trained: measured[trained]})
        fig.add_trace(curve(rows["relative_depth"], rows[f"{metric}_exact_without_first_token"],
                            name=f"{trained} · exact, α=1, first token left out (check)",
                            color=CHECK_COLOR, dash="dot", marker={"size": 5}))
        if metric == "dataset_entropy":
            fig.add_trace(curve(rows["relative_depth"], rows["dataset_entropy_reference_pipeline"],
                                name=f"{trained} · OFSkean/information_flow pipeline, ported (check)",
                                color=REFERENCE_COLOR, dash="dashdot", marker={"size": 5}))
        rows_name = "N" if metric == "dataset_entropy" else "T"
        fig.update_yaxes(title_text=f"{metric.replace('_', ' ')} (÷ log min({rows_name}, D))")
        # bands of fewer than 20 points would get plotly's default markers: keep them plain fills
        fig.update_traces(mode="lines", selector={"fill": "toself"})
        fig.update_layout(legend={"orientation": "h", "y": -0.2, "font": {"size": 13}}, height=700)
        written += save_figure(fig, out / stems[metric], html)
    return written


def summary(frame: pd.DataFrame) -> list[str]:
    """Per model and column: the ends, and the lowest and highest intermediate layer."""
    lines = []
    for model, rows in frame.groupby("model", sort=False):
        depth = rows["relative_depth"].to_numpy()
        for column in [c for c in rows.columns if c.startswith(("dataset_entropy", "prompt_entropy"))
                       and not c.endswith(("_q25", "_q75", "_skipped"))]:
            v = rows[column].to_numpy(dtype=float)
            mid = np.arange(1, len(v) - 1)
            lo, hi = mid[np.nanargmin(v[mid])], mid[np.nanargmax(v[mid])]
            lines.append(f"{model} · {column}: {v[0]:.3f} (embeddings), intermediate min {v[lo]:.3f} at depth "
                         f"{depth[lo]:.2f}, max {v[hi]:.3f} at depth {depth[hi]:.2f}, {v[-1]:.3f} (last)")
        for metric in METRICS:
            gap = rows[f"{metric}_skean"].to_numpy(dtype=float) - rows[f"{metric}_exact"].to_numpy(dtype=float)
            i = int(np.nanargmax(gap))
            lowest = {v: int(np.nanargmin(rows[f"{metric}_{v}"].to_numpy(dtype=float)[1:-1])) + 1 for v in VARIANTS}
            lines.append(f"{model} · {metric} skean - exact: from {np.nanmin(gap):+.3f} to {gap[i]:+.3f} "
                         f"(at depth {depth[i]:.2f}); lowest intermediate layer exact {lowest['exact']}, "
                         f"skean {lowest['skean']}")
    return lines


def print_tables(frame: pd.DataFrame, trained: str, untrained: str) -> None:
    """The page's tables as Markdown: smollm2 dataset entropy, smollm2 prompt entropy, minilm."""
    t = frame[frame.model == trained].reset_index(drop=True)
    u = frame[frame.model == untrained].reset_index(drop=True)
    m = frame[frame.model == "minilm"].reset_index(drop=True)

    def cell(rows: pd.DataFrame, column: str) -> list[str]:
        """The value, with the interquartile range over prompts for the prompt entropy."""
        if f"{column}_q25" not in rows:
            return [f"{v:.3f}" for v in rows[column]]
        return [f"{a:.3f} ({b:.3f}–{c:.3f})" for a, b, c in
                zip(rows[column], rows[f"{column}_q25"], rows[f"{column}_q75"])]

    def layers(rows: pd.DataFrame) -> dict[str, list]:
        return {"layer": [f"{i} · `{name}`" for i, name in zip(rows.layer_index, rows.layer)],
                "depth": [f"{d:.2f}" for d in rows.relative_depth]}

    for metric in METRICS:
        shown, headers = layers(t), {"layer": "layer", "depth": "depth"}
        for who, rows in (("trained", t), ("untrained", u)):
            for variant in VARIANTS:
                shown[f"{who}_{variant}"] = cell(rows, f"{metric}_{variant}")
                headers[f"{who}_{variant}"] = f"{who}, {variant}"
            if metric == "dataset_entropy":
                shown[f"{who}_reference"] = cell(rows, "dataset_entropy_reference_pipeline")
                headers[f"{who}_reference"] = f"{who}, reference pipeline"
        for variant in VARIANTS:
            shown[f"nf_{variant}"] = cell(t, f"{metric}_{variant}_without_first_token")
            headers[f"nf_{variant}"] = f"trained, {variant}, no 1st token"
        print(markdown_table(pd.DataFrame(shown), headers, {}))
        print()
    shown, headers = layers(m), {"layer": "layer", "depth": "depth"}
    for metric in METRICS:
        for variant in VARIANTS:
            shown[f"{metric}_{variant}"] = cell(m, f"{metric}_{variant}")
            headers[f"{metric}_{variant}"] = f"{metric.split('_')[0]}, {variant}"
        if metric == "dataset_entropy":
            shown["reference"] = cell(m, "dataset_entropy_reference_pipeline")
            headers["reference"] = "dataset, reference pipeline"
    print(markdown_table(pd.DataFrame(shown), headers, {}))
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="./workspace", help="workspace folder (default ./workspace)")
    parser.add_argument("--out", default=str(HERE / "figures"), help="where figures and the CSV go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-initialised twin")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    parser.add_argument("--html", action="store_true", help="also write standalone HTML figures (~5 MB each)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in ("skean_entropy", "straightening_and_id"):
        logging.getLogger(name).setLevel(logging.INFO)  # our progress only: kaleido logs a lot at INFO
    store = Store(args.workspace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    measured, infos = {}, {}
    for template, (model, reinit) in MODELS.items():
        label = template.format(seed=args.seed)
        acts, infos[label] = tokens_run(model, reinit=reinit, seed=args.seed, store=store, device=args.device,
                                        label=label)
        measured[label] = measure(acts, seed=args.seed, store=store, label=label)
    trained, untrained = (t.format(seed=args.seed) for t in list(MODELS)[:2])

    frame = table(measured)
    frame.to_csv(out / "skean_entropy.csv", index=False)
    written = ["skean_entropy.csv", *figures(measured, trained, untrained, out, args.html)]

    print_tables(frame, trained, untrained)
    for label, info in infos.items():
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in info.items())
              + f", entropy seconds={measured[label][1]['seconds']}")
    print("\n".join(summary(frame)))
    print(f"\nwrote to {out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
