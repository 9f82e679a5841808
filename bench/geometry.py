"""Geometry of every layer against the extraction it measures.

All geometry metrics (curvature, intrinsic dimension, dataset and prompt entropy, effective
rank, anisotropy) on all 31 hidden states of smollm2, 500 inputs of demo:sentences,
pooling="tokens". In the same run: the extraction of those activations (into a fresh
temporary store, so it is really computed; the converted smollm2 weights come from the
workspace) and `geometry_by_layer` on that run with store=None (no cache), then the ratio.

    python bench/geometry.py [--n 500] [--workspace workspace] [--device cpu] [--repeats 1]

target: metrics cost less than the extraction (ratio < 1)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import core
from core.analysis.geometry import GEOMETRY_METRICS, geometry_by_layer
from results import result as print_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="inputs of demo:sentences")
    parser.add_argument("--workspace", default="workspace", help="where the converted smollm2 weights are")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the geometry computation")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    workspace = core.Store(args.workspace)
    model = core.load_model("smollm2", device=device, workspace=workspace.root)
    data = core.load_dataset("demo:sentences", limit=args.n)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, smollm2, {len(data)} inputs of "
          f"demo:sentences, pooling=tokens, metrics: {', '.join(GEOMETRY_METRICS)}")

    with tempfile.TemporaryDirectory(prefix="layerscope-bench-") as tmp:
        fresh = core.Store(tmp)
        start = time.perf_counter()
        acts = core.extract(model, data, layers="all", pooling="tokens", store=fresh)
        t_extract = time.perf_counter() - start
        n_rows = acts.meta["n_rows"]
        print(f"  run: {len(acts.layer_names)} layers, {n_rows} token rows")
        print(f"  extraction (fresh store):        {t_extract:8.2f} s")

        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = geometry_by_layer(acts, tuple(GEOMETRY_METRICS), store=None, device=device)
            times.append(time.perf_counter() - start)
        t_geometry = statistics.median(times)
        print(f"  geometry_by_layer (store=None):  {t_geometry:8.2f} s (median of {args.repeats})")
        print(f"  ratio geometry / extraction: {t_geometry / t_extract:.2f}")
        print_result("geometry_by_layer / extraction time", f"{t_geometry / t_extract:.2f}", "< 1", t_geometry < t_extract)
        frame = result.to_frame()
        print(f"  computed: {frame.shape[0]} layer x metric values, {int(frame['value'].isna().sum())} NaN")
        for metric, reason in result.reasons.items():
            if reason:
                print(f"    {metric}: {reason}")
        del acts


if __name__ == "__main__":
    main()
