"""Reproduction: layer correspondence across seeds (CKA) and cross-model alignment (mutual k-NN).

1. Kornblith et al. 2019 / Li et al. 2015: two copies of one network trained from different
   seeds (the bundled digits-mlp, seeds 0 and 1, on demo:digits). Linear CKA between every
   pair of layers; does each layer of seed 0 best match the same layer of seed 1? The same
   against the re-initialised (untrained) network as a control.
2. Huh et al. 2024 (Platonic Representation Hypothesis): mutual k-NN (k = 10) between a
   sentence encoder (minilm) and a causal LM (smollm2) on demo:sentences, every layer pair,
   against the same with the LM's re-initialised twin. Also linear CKA.

    python docs/reproductions/convergent_and_platonic.py [--workspace ./workspace] [--html]

Writes into docs/reproductions/figures/: the heatmaps as PNG (kaleido + Chromium; `--html`
adds standalone HTML) and every matrix as CSV, then prints the summary. Everything goes
through the store: a second run reads it back.
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
from core.analysis.similarity import SimilarityResult, similarity_matrix  # noqa: E402
from core.figures.similarity import similarity_heatmap  # noqa: E402
from core.store import Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightening_and_id import save_figure  # noqa: E402

logger = logging.getLogger("convergent_and_platonic")

HERE = Path(__file__).resolve().parent


def run(store: Store, model: str, dataset: str, *, reinit: bool = False, seed: int = 0):
    """The mean-pooled run of `model` on `dataset` (extracted once, then read from the store)."""
    start = time.time()
    loaded = core.load_model(model, reinit=reinit, seed=seed, workspace=store.root)
    acts = core.extract(loaded, core.load_dataset(dataset), layers="all", pooling="mean", store=store)
    logger.info("%s%s on %s: run %s (%d inputs, %d layers) in %.0f s", model, " (untrained)" if reinit else "",
                dataset, acts.key, acts.n_inputs, len(acts.layer_names), time.time() - start)
    return acts


def correspondence(result: SimilarityResult) -> float:
    """Share of A's layers whose most similar B layer is the same layer (square matrices)."""
    best = np.nanargmax(result.matrix, axis=1)
    return float(np.mean(best == np.arange(len(best))))


def frame(result: SimilarityResult, pair: str) -> pd.DataFrame:
    out = result.to_frame()
    out.insert(0, "pair", pair)
    out.insert(1, "metric", result.label)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="./workspace", help="workspace folder (default ./workspace)")
    parser.add_argument("--out", default=str(HERE / "figures"), help="where figures and CSVs go")
    parser.add_argument("--html", action="store_true", help="also write standalone HTML figures (~5 MB each)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    store = Store(args.workspace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, tables, lines = [], [], []

    # ----- 1. two seeds of one network ---------------------------------------------------------
    seed0 = run(store, "digits-mlp", "demo:digits")
    seed1 = run(store, "digits-mlp:seed=1", "demo:digits")
    untrained = run(store, "digits-mlp", "demo:digits", reinit=True)
    seeds = similarity_matrix(seed0, seed1, "linear_cka", store=store, max_points=None)
    control = similarity_matrix(seed0, untrained, "linear_cka", store=store, max_points=None)
    for result, pair in ((seeds, "digits-mlp seed 0 vs seed 1"), (control, "digits-mlp seed 0 vs untrained")):
        tables.append(frame(result, pair))
        diagonal = np.diag(result.matrix)
        lines.append(f"{pair}: linear CKA diagonal {np.array2string(diagonal, precision=3)}, "
                     f"same-layer best match {correspondence(result):.0%} of layers")
    fig = similarity_heatmap(seeds, title="Linear CKA: digits-mlp seed 0 vs seed 1 (demo:digits, 1,797 images)",
                             publication=True)
    written += save_figure(fig, out / "cka_digits_two_seeds", args.html)

    # ----- 2. an encoder and a causal LM on the same sentences --------------------------------------
    encoder = run(store, "minilm", "demo:sentences")
    lm = run(store, "smollm2", "demo:sentences")
    lm_untrained = run(store, "smollm2", "demo:sentences", reinit=True)
    for metric, params in (("mutual_knn", {"k": 10}), ("linear_cka", {})):
        trained = similarity_matrix(encoder, lm, metric, store=store, max_points=None, **params)
        versus = similarity_matrix(encoder, lm_untrained, metric, store=store, max_points=None, **params)
        for result, pair in ((trained, "minilm vs smollm2"), (versus, "minilm vs smollm2 (untrained)")):
            tables.append(frame(result, pair))
            a, b, value = result.best_pair()
            lines.append(f"{pair}, {result.label}: best pair {a} / {b} = {value:.3f}, "
                         f"mean over all pairs {np.nanmean(result.matrix):.3f}, "
                         f"last layers {result.matrix[-1, -1]:.3f}")
        fig = similarity_heatmap(trained, title=f"{trained.label}: minilm vs smollm2 (demo:sentences, 864 inputs)",
                                 publication=True)
        written += save_figure(fig, out / f"{metric}_minilm_vs_smollm2", args.html)

    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "convergent_and_platonic.csv", index=False)
    written.append("convergent_and_platonic.csv")
    print("\n".join(lines))
    print(f"\nwrote to {out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
