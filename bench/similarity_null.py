"""The permutation null of a 7 x 31 linear-CKA matrix against the matrix itself.

Synthetic activations shaped like minilm (7 layers, 384 wide) and smollm2 (31 hidden states,
576 wide), on 2,000 inputs: both read the same low-rank inputs and each layer is a noisy
random map of the one before, so cells range from related to nearly unrelated. Times `similarity_matrix(..., "linear_cka",
max_points=None)` and `permutation_null(..., n_permutations=100)` (which computes the matrix
too, then the null from each layer's Gram prepared once) in the same process, and prints the
ratio. Both run on the same in-memory float32 arrays.

    python bench/similarity_null.py [--n 2000] [--permutations 100] [--device cpu]

target: the 100-permutation null costs <= 10x the matrix
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from results import result

from core.analysis.similarity import similarity_matrix
from core.analysis.similarity.null import permutation_null


def synthetic_layers(shared: np.ndarray, n_layers: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{layer: (n, width) float32} from the same inputs `shared`, each layer a tanh of a noisy map of the one before."""
    X = shared[:, :width]  # (n, width); shared is at least as wide as any layer
    out = {}
    for i in range(n_layers):
        X = np.tanh(X @ rng.standard_normal((width, width)) / np.sqrt(width) + 0.2 * rng.standard_normal(X.shape))
        out[f"layer{i}"] = X.astype(np.float32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((args.n, 64)) @ rng.standard_normal((64, 576))  # low-rank, as real activations
    a = synthetic_layers(inputs, 7, 384, rng)
    b = synthetic_layers(inputs, 31, 576, rng)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, n={args.n}, "
          f"A 7 layers x 384, B 31 layers x 576, {7 * 31} pairs, {args.permutations} permutations")
    similarity_matrix({"w": a["layer0"]}, {"w": b["layer0"]}, "linear_cka", max_points=None,
                      device=device)  # warm-up (library loading, CUDA context)

    start = time.perf_counter()
    matrix = similarity_matrix(a, b, "linear_cka", max_points=None, device=device)
    t_matrix = time.perf_counter() - start
    start = time.perf_counter()
    null = permutation_null(a, b, "linear_cka", n_permutations=args.permutations, max_points=None, device=device)
    t_null = time.perf_counter() - start
    ratio = t_null / t_matrix
    print(f"  matrix: {t_matrix:7.2f} s")
    print(f"  matrix + {args.permutations}-permutation null: {t_null:7.2f} s")
    print(f"  observed CKA {np.nanmin(matrix.matrix):.3f} .. {np.nanmax(matrix.matrix):.3f}; "
          f"null mean {np.nanmin(null.null_mean):.4f} .. {np.nanmax(null.null_mean):.4f}; "
          f"cells with p < 0.05: {int(null.above_null().sum())} of {null.p_value.size}")
    result(f"null_{args.permutations}_over_matrix", f"{ratio:.2f}", "10", ratio <= 10)


if __name__ == "__main__":
    main()
