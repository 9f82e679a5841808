"""Layer-by-layer similarity: reuse of per-layer work against a naive double loop.

`similarity_matrix` (linear CKA, 7 x 7 layers, n = 3000 inputs, d = 384) prepares each
layer once (centred features, their self-products) and then fills every pair, against a
double loop calling `linear_cka(X, Y)` per pair, which centres and multiplies both sides
again for every pair. Both in the same run, on the same device, on the same synthetic
"models" (7 layers, each a noisy non-linear map of the one before). Two cases: two
different models (49 pairs) and a model against itself (symmetric: 28 pairs computed).

    python bench/similarity_synthetic.py [--repeats 3] [--n 3000] [--d 384] [--layers 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from core.analysis.similarity import linear_cka, similarity_matrix
from results import result


def synthetic_model(n: int, d: int, n_layers: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    layers = {}
    for i in range(n_layers):
        X = np.tanh(X @ (rng.standard_normal((d, d)) / np.sqrt(d)) + 0.5 * X + 0.1 * rng.standard_normal((n, d)))
        layers[f"layer{i}"] = X.astype(np.float32)  # stored activations are float32
    return layers


def naive(a: dict[str, np.ndarray], b: dict[str, np.ndarray], device: str) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    matrix = np.array([[linear_cka(a[la], b[lb], device=device) for lb in b] for la in a])
    return time.perf_counter() - start, matrix


def reused(a: dict[str, np.ndarray], b: dict[str, np.ndarray], device: str) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = similarity_matrix(a, b, "linear_cka", max_points=None, device=device)
    return time.perf_counter() - start, result.matrix


def compare(name: str, a, b, device: str, repeats: int) -> None:
    times_naive, times_reused = [], []
    for _ in range(repeats):
        t, m_naive = naive(a, b, device)
        times_naive.append(t)
        t, m_reused = reused(a, b, device)
        times_reused.append(t)
    t_naive, t_reused = statistics.median(times_naive), statistics.median(times_reused)
    print(f"{name}:")
    print(f"  naive double loop of linear_cka: {t_naive:7.2f} s (median of {repeats})")
    print(f"  similarity_matrix (reused):      {t_reused:7.2f} s (median of {repeats})")
    difference = np.abs(m_naive - m_reused).max()
    print(f"  speed-up naive / reused: {t_naive / t_reused:.2f}x   max |difference|: {difference:.1e}")
    result(f"{name}: linear_cka loop / similarity_matrix", f"{t_naive / t_reused:.2f}x", "> 1x", t_naive > t_reused)
    result(f"{name}: max |difference|", f"{difference:.1e}", "<= 1e-6", difference <= 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    a = synthetic_model(args.n, args.d, args.layers, seed=0)
    b = synthetic_model(args.n, args.d, args.layers, seed=1)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, n={args.n}, d={args.d}, "
          f"layers: {args.layers} x {args.layers}, float64")
    linear_cka(a["layer0"], b["layer0"], device=device)  # warm-up (library loading, CUDA context)
    compare("two models", a, b, device, args.repeats)
    compare("a model against itself", a, a, device, args.repeats)


if __name__ == "__main__":
    main()
