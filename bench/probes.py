"""Benchmark: Layerscope's batched torch logistic probes vs a loop of scikit-learn fits.

The problem is the real one when it can be built: MiniLM (embeddings + 6 blocks,
384 wide, mean-pooled) on demo:cities, labels = continent (6 classes, 3000 inputs).
If the model or data cannot be loaded, a synthetic stand-in of the same shape is used.

Both sides use the same StratifiedKFold folds and standardise on each training split.
The baseline is `StandardScaler` + `LogisticRegression(C=1, max_iter=M)` per layer and
fold, measured in this process: M=100 (sklearn's default, often stopped before
convergence) and M=1000 (converged, the reference for the accuracy comparison).

    python bench/probes.py                 # real data when available
    python bench/probes.py --synthetic     # the stand-in only
    python bench/probes.py --skip-converged
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.analysis.probes import probe_accuracy_by_layer  # noqa: E402

logger = logging.getLogger("bench.probes")


def real_problem() -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """MiniLM mean-pooled activations of demo:cities and the continent labels."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import core

    acts = core.extract(core.load_model("minilm"), core.load_dataset("demo:cities"), layers="all", pooling="mean")
    layers = {name: np.asarray(acts[name]) for name in acts.layer_names}
    return layers, acts.labels("continent"), f"minilm on demo:cities (run {acts.key}), label continent"


def synthetic_problem(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """7 layers x 3000 x 384, 6 unbalanced classes, a weak class signal growing with depth (like cities)."""
    rng = np.random.default_rng(seed)
    n, d, k = 3000, 384, 6
    shares = np.array([0.53, 0.14, 0.13, 0.1, 0.09, 0.01])
    labels = rng.choice(k, size=n, p=shares / shares.sum())
    mixing = rng.standard_normal((64, d)) / 8  # correlated features, as real activations are
    centres = rng.standard_normal((k, 64))
    layers = {}
    for i in range(7):
        latent = rng.standard_normal((n, 64)) + (0.15 + 0.02 * i) * centres[labels]
        layers[f"layer{i}"] = (latent @ mixing + 0.3 * rng.standard_normal((n, d)) + 3.0).astype(np.float32)
    return layers, np.array([f"class{c}" for c in labels]), "synthetic stand-in (7 x 3000 x 384, 6 classes)"


def sklearn_loop(layers: dict[str, np.ndarray], labels: np.ndarray, folds, max_iter: int) -> np.ndarray:
    """(n_layers, n_folds) held-out accuracy from one LogisticRegression fit per layer and fold."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros((len(layers), len(folds)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, X in enumerate(layers.values()):
            for f, (train, test) in enumerate(folds):
                scaler = StandardScaler().fit(X[train])
                model = LogisticRegression(C=1.0, max_iter=max_iter).fit(scaler.transform(X[train]), labels[train])
                scores[i, f] = (model.predict(scaler.transform(X[test])) == labels[test]).mean()
    return scores


def timed(fn):
    """(result, wall seconds, process CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in, not MiniLM on cities")
    parser.add_argument("--skip-converged", action="store_true", help="skip the slow max_iter=1000 sklearn loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.synthetic:
        layers, labels, source = synthetic_problem()
    else:
        try:
            layers, labels, source = real_problem()
        except Exception as err:  # the bench must still run where the model or data is missing
            logger.warning("real problem unavailable (%s: %s); using the synthetic stand-in", type(err).__name__, err)
            layers, labels, source = synthetic_problem()

    from sklearn.model_selection import StratifiedKFold

    import torch

    n, d = next(iter(layers.values())).shape
    n_classes = len(np.unique(labels))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(n), labels))
    print(f"problem: {source}")
    print(f"shape: {len(layers)} layers x {n} inputs x {d} features, {n_classes} classes, 5 folds")
    print(f"cpu threads: torch {torch.get_num_threads()}, os {os.cpu_count()}")

    # warm-up on a small slice: imports and first-call costs are not the method's cost
    small = {name: X[:300] for name, X in list(layers.items())[:1]}
    probe_accuracy_by_layer(small, labels[:300], n_folds=2, control=False)

    # the machine is shared: time our path before and after the baseline and keep the slower run
    ours, wall_a, cpu_a = timed(lambda: probe_accuracy_by_layer(layers, labels, control=False))
    sk_default, wall_default, cpu_default = timed(lambda: sklearn_loop(layers, labels, folds, max_iter=100))
    _, wall_b, cpu_b = timed(lambda: probe_accuracy_by_layer(layers, labels, control=False))
    ours_ctrl, wall_ctrl, _ = timed(lambda: probe_accuracy_by_layer(layers, labels, control=True))
    wall_ours, cpu_ours = max(wall_a, wall_b), max(cpu_a, cpu_b)
    iterations = ours.details["n_iter"]
    print(f"layerscope torch, 35 fits:       wall {wall_a:7.2f} s / {wall_b:7.2f} s (before / after the baseline), "
          f"cpu {cpu_ours:7.2f} s; L-BFGS iterations median {int(np.median(iterations))}, max {iterations.max()}")
    print(f"layerscope torch with control:   wall {wall_ctrl:7.2f} s (70 fits: labels + shuffled labels)")
    print(f"sklearn loop, max_iter=100:      wall {wall_default:7.2f} s, cpu {cpu_default:7.2f} s (sklearn's default)")
    ratio_default = wall_default / wall_ours
    print(f"speed ratio vs sklearn max_iter=100:  {ratio_default:6.1f}x wall, {cpu_default / cpu_ours:6.1f}x cpu")
    reference, label = sk_default, "max_iter=100"
    if not args.skip_converged:
        sk_conv, wall_conv, cpu_conv = timed(lambda: sklearn_loop(layers, labels, folds, max_iter=1000))
        print(f"sklearn loop, max_iter=1000:     wall {wall_conv:7.2f} s, cpu {cpu_conv:7.2f} s (converged)")
        ratio_wall, ratio_cpu = wall_conv / wall_ours, cpu_conv / cpu_ours
        print(f"speed ratio vs sklearn max_iter=1000: {ratio_wall:6.1f}x wall, {ratio_cpu:6.1f}x cpu")
        reference, label = sk_conv, "max_iter=1000"
        print(
            f"sklearn max_iter=100 vs 1000, largest layer-mean difference: "
            f"{np.abs(sk_default.mean(1) - sk_conv.mean(1)).max() * 100:.2f} points"
        )
    layer_diff = np.abs(ours.mean - reference.mean(1)).max() * 100
    fold_diff = np.abs(ours.scores - reference).max() * 100
    print(
        f"largest accuracy difference vs sklearn {label}: {layer_diff:.2f} points (layer mean), "
        f"{fold_diff:.2f} points (single fold)"
    )
    print("layer            ours    sklearn  control  chance")
    for i, name in enumerate(ours.layer_names):
        print(
            f"{name[:16]:16s} {ours.mean[i]:.4f}  {reference[i].mean():.4f}   {ours_ctrl.control_mean[i]:.4f}   "
            f"{ours.chance:.4f}"
        )
    print("target: >= 3x faster, accuracy within 1 point")
    met = ratio_default >= 3 and layer_diff <= 1
    print(
        f"result: {ratio_default:.1f}x faster (wall) than the default sklearn loop, within {layer_diff:.2f} points "
        f"-> {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
