"""Benchmark: PNG export with a kept-alive kaleido browser vs a fresh browser per image; the demo report.

Part 1 exports the same 20 figures (10 layer maps of 864 points, 10 probe-style curves,
drawn by core.figures from seeded synthetic data) as PNG at scale 2, first through one
kept-alive `ImageRenderer` (its start-up counted), then with a fresh renderer (a new
headless browser) per image, and prints the ratio.

Part 2 (when the workspace holds the demo run, minilm on demo:sentences with mean
pooling, e.g. after `make demo`) computes the run's analyses once (untimed: the
dashboard's pages do this), then times `write_report` of every figure of that run into a
temporary folder against the 30 s target.

    python bench/export.py                 # both parts
    python bench/export.py --images 10     # fewer images
    python bench/export.py --skip-report
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import export  # noqa: E402
from core.figures.maps import layer_map  # noqa: E402
from core.figures.similarity import relative_depth_curves  # noqa: E402
from results import result as report_result  # noqa: E402

REPORT_TARGET_S = 30.0


def figures(count: int, seed: int = 0) -> list:
    """`count` figures: alternately a 864-point layer map and a 7-layer curve figure."""
    rng = np.random.default_rng(seed)
    topics = np.array(["finance", "food", "health", "sports", "technology", "weather"])
    labels = pd.DataFrame({"topic": topics[rng.integers(0, 6, 864)]})
    out = []
    for i in range(count):
        if i % 2 == 0:
            coords = rng.normal(size=(864, 2))
            out.append(layer_map(coords, texts=[f"input {j}" for j in range(864)], labels=labels, color_by="topic",
                                 title=f"map {i}"))
        else:
            layers = [f"layer.{j}" for j in range(7)]
            curves = {f"model {k}": (layers, np.sort(rng.uniform(0.3, 1.0, 7))) for k in range(2)}
            out.append(relative_depth_curves(curves, y_title="held-out probe accuracy", title=f"curves {i}"))
    return out


def time_images(figs: list) -> tuple[float, float]:
    styled = [export.publication_style(f) for f in figs]
    kept = export.ImageRenderer()
    start = time.perf_counter()
    for fig in styled:
        export.figure_bytes(fig, "png", scale=2, styled=True, image_renderer=kept)
    kept_alive = time.perf_counter() - start
    kept.close()
    start = time.perf_counter()
    for fig in styled:
        fresh = export.ImageRenderer()
        try:
            export.figure_bytes(fig, "png", scale=2, styled=True, image_renderer=fresh)
        finally:
            fresh.close()
    return kept_alive, time.perf_counter() - start


def demo_run(store):
    for run in store.list_runs():
        if (run["model"]["name"], run["dataset"]["name"], run["pooling"]) == ("minilm", "demo:sentences", "mean"):
            return run["key"]
    return None


def time_report(workspace: str | None) -> None:
    from core.recipes import Context, build_figure
    from core.report import plan_report, write_report
    from core.store import Store

    store = Store(workspace)
    key = demo_run(store)
    if key is None:
        print(f"report: no demo run (minilm on demo:sentences, mean) in {store.root}; run `make demo` first")
        return
    specs = plan_report(store, [key])
    start = time.perf_counter()
    context = Context(store)
    for spec in specs:  # compute and store the analyses (the pages do this before anyone exports)
        try:
            build_figure(spec, store, context=context)
        except Exception as err:  # noqa: BLE001
            print(f"  (cannot build {spec['figure']}: {err})")
    print(f"report: analyses of run {key} ready in {time.perf_counter() - start:.1f} s (untimed warm-up)")
    with tempfile.TemporaryDirectory() as tmp:
        result = write_report(store, [key], Path(tmp) / "report", specs=specs)
        size = sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file())
        print(f"report: {len(result.figures)} figures (PNG + SVG + HTML + CSV + Parquet + sidecar each), "
              f"{size / 2**20:.0f} MB + zip {result.zip_path.stat().st_size / 2**20:.0f} MB, "
              f"{result.seconds:.1f} s; target < {REPORT_TARGET_S:.0f} s: "
              f"{'met' if result.seconds < REPORT_TARGET_S else 'MISSED'} "
              f"(x{result.seconds / REPORT_TARGET_S:.2f} of the target)")
    report_result("demo report with stored analyses", f"{result.seconds:.1f} s", f"< {REPORT_TARGET_S:.0f} s",
                  result.seconds < REPORT_TARGET_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--workspace",
                        help="workspace holding the demo run (default $LAYERSCOPE_WORKSPACE or ./workspace)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reason = export.images_unavailable_reason()
    if reason:
        print(f"images: skipped: {reason}")
    else:
        kept, fresh = time_images(figures(args.images))
        print(f"images: {args.images} PNGs (scale 2) with a kept-alive browser {kept:.1f} s "
              f"({kept / args.images:.2f} s each, start-up included); a fresh browser per image {fresh:.1f} s "
              f"({fresh / args.images:.2f} s each); fresh / kept-alive = {fresh / kept:.1f}x")
        report_result("PNG export, fresh browser per image / kept-alive browser", f"{fresh / kept:.1f}x", ">= 3x",
                      fresh / kept >= 3)
    if not args.skip_report:
        time_report(args.workspace)


if __name__ == "__main__":
    main()
