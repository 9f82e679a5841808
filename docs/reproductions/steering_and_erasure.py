"""Reproduction: LEACE against mean-difference projection (Belrose et al. 2023), and activation addition of a
sentiment direction (Turner et al. 2023) on the bundled models.

(a) Erasure. minilm on demo:sentences (mean-pooled, every layer). At each layer the `topic`
    concept is erased with LEACE and with the mean-difference projection; a 5-fold logistic
    probe is cross-validated before and after, and the mean squared change of the
    activations of each method is recorded. The middle layer is also erased with later
    layers re-extracted, for the figures.
(b) Steering. smollm2 on demo:sentences (mean-pooled, a few layers). The unit
    mean-difference direction sentiment positive - negative at a middle layer is added with
    alpha in units of the layer's mean activation norm to neutral prompts, greedy decoding;
    a sentiment probe fitted on the run reads the steered stream and the continuations.

    python docs/reproductions/steering_and_erasure.py [--workspace ./workspace]

Writes the figures through their recipes (PNG + sidecar) into docs/reproductions/figures/,
and prints the tables as Markdown.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd

import core
from core import export
from core.export import figure_spec
from core.interventions.directions import mean_difference_direction
from core.interventions.erase import erase_concept
from core.interventions.stored import save_direction
from core.recipes import Context, build_figure
from core.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightening_and_id import markdown_table

logger = logging.getLogger("steering_and_erasure")
FIGURES = Path(__file__).resolve().parent / "figures"
STEER_LAYERS = [f"model.layers.{i}" for i in (6, 12, 15, 18, 24, 29)]
STEER_LAYER = "model.layers.15"
PROMPTS = ["I went to see the movie and", "The food at the restaurant was", "My day at work was",
           "The new phone is", "Yesterday the weather was", "The book I read last week was"]
ALPHAS = [-1.0, -0.5, 0.0, 0.5, 1.0]


def run_of(model, data: str, store: Store, **options):
    """The run of `model` on `data` (extracted once, then read back)."""
    return core.extract(model, core.load_dataset(data), store=store, **options)


def write(spec: dict, context: Context, stem: str) -> str:
    """Build a figure by its recipe and write it as PNG with its sidecar; returns its caption."""
    built = build_figure(spec, context=context)
    export.export_figure(built.figure, FIGURES, name=stem, spec=built.spec, store=context.store, formats=("png",),
                         publication=True, scale=2, table=built.table, analysis=built.analysis, caption=built.caption)
    return built.caption


def erasure_table(store: Store, minilm) -> tuple[str, pd.DataFrame]:
    acts = run_of(minilm, "demo:sentences", store, pooling="mean")
    rows = []
    for layer in acts.layer_names[1:]:
        for method in ("leace", "mean_difference"):
            r = erase_concept(None, acts, layer, "topic", method=method, store=store)
            rows.append({"layer": layer, "method": method, "before": r.accuracy_before[0],
                         "after": r.accuracy_after[0], "chance": r.chance, "msc": r.mean_squared_change,
                         "relative": r.relative_change})
    return acts.key, pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="./workspace")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    store = Store(args.workspace)
    FIGURES.mkdir(parents=True, exist_ok=True)
    minilm = core.load_model("minilm", device="cpu")
    smollm2 = core.load_model("smollm2", device="cpu", workspace=store.root)
    loaded = {"minilm": minilm, "smollm2": smollm2}
    context = Context(store, load_model=loaded.__getitem__)

    key, table = erasure_table(store, minilm)
    print(markdown_table(table, {"layer": "layer", "method": "method", "before": "accuracy before",
                                 "after": "accuracy after", "chance": "chance", "msc": "mean ‖x−x′‖²",
                                 "relative": "share of variance"},
                         {"before": ".3f", "after": ".3f", "chance": ".3f", "msc": ".4f", "relative": ".3f"}))
    erase = {"layer": "encoder.layer.2", "label": "topic", "method": "leace",
                 "later_layers": ["encoder.layer.3", "encoder.layer.4", "encoder.layer.5"]}
    print(write(figure_spec("erasure_accuracy", [key], **erase), context, "erasure_leace_minilm_topic"))
    print(write(figure_spec("erasure_change", [key], **erase), context, "erasure_change_minilm_topic"))
    erase["method"] = "mean_difference"
    print(write(figure_spec("erasure_accuracy", [key], **erase), context, "erasure_meandiff_minilm_topic"))

    acts = run_of(smollm2, "demo:sentences", store, pooling="mean", layers=STEER_LAYERS)
    direction = save_direction(store, mean_difference_direction(acts, STEER_LAYER, "sentiment", "positive",
                                                                "negative"))
    steer = {"direction": direction, "prompts": PROMPTS, "alphas": ALPHAS, "position": "all", "max_new_tokens": 20,
                 "readout_label": "sentiment", "readout_class": "positive"}
    for kind in ("steering_readout", "steering_kl", "steering_tokens", "steering_continuations"):
        print(write(figure_spec(kind, [acts.key], **steer), context, f"{kind}_smollm2_sentiment"))
    result = build_figure(figure_spec("steering_readout", [acts.key], **steer), context=context).result
    readout = pd.DataFrame({"alpha": result.alphas, "continuations": result.continuation_readout,
                            **{layer: result.readout[:, r] for r, layer in enumerate(result.readout_layers)},
                            "kl": result.kl.mean(axis=1)})
    print(markdown_table(readout, {c: c for c in readout.columns}, {c: ".3f" for c in readout.columns}))
    for i, alpha in enumerate(result.alphas):
        for j, prompt in enumerate(result.prompts[:3]):
            print(f"alpha={alpha:g} | {prompt} -> {result.continuations[i, j]!r}")


if __name__ == "__main__":
    main()
