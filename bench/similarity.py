"""Linear CKA between two real models, every layer against every layer.

minilm (7 layers, 384 wide) against smollm2 (31 hidden states, 576 wide), both with mean
pooling, on the first 2,000 inputs of demo:cities: the full 7 x 31 matrix. Layerscope's
`similarity_matrix(..., "linear_cka", max_points=None)` against a plain numpy loop that
computes every pair from scratch in float64 (the google-research feature-space formula):
centre X and Y, then |X^T Y|_F^2 / (|X^T X|_F |Y^T Y|_F).

On the CPU the batched path centres each layer once in float64, builds the centred Grams
in float32 blocks of rows of their upper triangles (every layer's Gram once, never held
whole) and adds the Frobenius products of all 7 x 31 pairs in float64; the difference to
the float64 loop is printed. Both sides run in the same process on the same in-memory
float32 arrays (the stored activations, read once before timing), alternately, `--repeats`
times; the medians are compared and the first (cold) call of each is printed too. The runs
are extracted into (or reused from) the workspace store.

    python bench/similarity.py [--workspace workspace] [--dataset demo:cities] [--n 2000] [--repeats 3]

target: >= 5x faster, identical values to 1e-6
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import core
from core.analysis.similarity import similarity_matrix
from results import result


def naive_cka(X: np.ndarray, Y: np.ndarray) -> float:
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    cross = np.linalg.norm(X.T @ Y, "fro") ** 2
    return float(cross / (np.linalg.norm(X.T @ X, "fro") * np.linalg.norm(Y.T @ Y, "fro")))


def naive(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    matrix = np.array([[naive_cka(a[la], b[lb]) for lb in b] for la in a])
    return time.perf_counter() - start, matrix


def reused(a: dict[str, np.ndarray], b: dict[str, np.ndarray], device: str) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = similarity_matrix(a, b, "linear_cka", max_points=None, device=device)
    return time.perf_counter() - start, result.matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--dataset", default="demo:cities", help="demo:cities or demo:words (>= n inputs)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    store = core.Store(args.workspace)
    data = core.load_dataset(args.dataset, limit=args.n)
    runs = {}
    for name in ("minilm", "smollm2"):
        start = time.perf_counter()
        model = core.load_model(name, device=device, workspace=store.root)
        runs[name] = core.extract(model, data, layers="all", pooling="mean", store=store)
        print(f"{name}: run {runs[name].key} ready in {time.perf_counter() - start:.1f} s "
              f"(extracted or reused from {store.root})")
        del model
    a = {layer: np.asarray(runs["minilm"][layer], dtype=np.float32) for layer in runs["minilm"].layer_names}
    b = {layer: np.asarray(runs["smollm2"][layer], dtype=np.float32) for layer in runs["smollm2"].layer_names}
    shape_a, shape_b = next(iter(a.values())).shape, next(iter(b.values())).shape
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, {args.dataset} n={len(data)}, "
          f"minilm {len(a)} layers x {shape_a[1]}, smollm2 {len(b)} layers x {shape_b[1]}, "
          f"{len(a)} x {len(b)} = {len(a) * len(b)} pairs")

    similarity_matrix({"w": a[next(iter(a))]}, {"w": b[next(iter(b))]}, "linear_cka", max_points=None,
                      device=device)  # warm-up (library loading, CUDA context)
    times_naive, times_reused = [], []
    for _ in range(args.repeats):
        t, m_naive = naive(a, b)
        times_naive.append(t)
        t, m_reused = reused(a, b, device)
        times_reused.append(t)
    t_naive, t_reused = statistics.median(times_naive), statistics.median(times_reused)
    difference = float(np.nanmax(np.abs(m_naive - m_reused)))
    print(f"  numpy loop, each pair from scratch: {t_naive:7.2f} s (median of {args.repeats}; "
          f"first {times_naive[0]:.2f} s)")
    print(f"  similarity_matrix (max_points=None): {t_reused:7.2f} s (median of {args.repeats}; "
          f"first {times_reused[0]:.2f} s)")
    print(f"  speed-up loop / similarity_matrix: {t_naive / t_reused:.2f}x   max |difference|: {difference:.1e}")
    print(f"  CKA range: {np.nanmin(m_reused):.3f} .. {np.nanmax(m_reused):.3f}")
    result("linear-CKA matrix, numpy loop / similarity_matrix", f"{t_naive / t_reused:.2f}x", ">= 5x",
           t_naive / t_reused >= 5)
    result("linear-CKA matrix, max |difference| to the float64 loop", f"{difference:.1e}", "<= 1e-6",
           difference <= 1e-6)


if __name__ == "__main__":
    main()
