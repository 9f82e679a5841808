"""Command line: `python -m core <command>`; the same code paths as the dashboard.

    python -m core extract --model minilm --data demo:sentences --layers all --pooling mean
    python -m core ls [--json] [--series]
    python -m core series --model digits-mlp:series --data demo:digits   # every checkpoint, linked
    python -m core layers --model smollm2 [--all]
    python -m core demo          # prepare the demo workspace the dashboard opens on (the light part)
    python -m core demo --heavy  # and the rest: SAEs, geometry, smollm2, the untrained twin
    python -m core report --model minilm --data demo:cities --out report/
    python -m core figure --from report/figures/03-probe-minilm-country.json
    python -m core dynamics --series KEY --metric probe,effective_rank --out dynamics/
    python -m core verify [--repair]   # check every entry's checksums, orphans and stale locks

Mistakes (unknown model, missing file, bad column...) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from core.errors import LayerscopeError


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default $LAYERSCOPE_WORKSPACE or ./workspace)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Layerscope: what every layer knows.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    extract = commands.add_parser("extract", help="extract per-layer activations into the workspace")
    extract.add_argument("--model", required=True, help="bundled name (minilm, smollm2, ...), folder, hub id or pkg.mod:factory")
    extract.add_argument("--data", required=True, help="demo:NAME, a CSV/JSONL/Parquet/text file or an image folder")
    extract.add_argument("--layers", default="all", help="'all' or comma-separated module paths")
    extract.add_argument("--pooling", default="mean", help="mean, first, last, max or tokens")
    extract.add_argument("--text-column", help="column holding the inputs")
    extract.add_argument("--label-columns", help="comma-separated label columns")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--max-length", type=int, help="truncate inputs to this many tokens")
    extract.add_argument("--device", help="cpu, cuda or auto (default)")
    extract.add_argument("--dtype", help="float32 (default); float16 or bfloat16 on a GPU")
    extract.add_argument("--reinit", action="store_true", help="use the architecture with re-initialised weights")
    extract.add_argument("--seed", type=int, default=0, help="seed for --reinit")
    extract.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with a hub model")
    extract.add_argument("--name", help="a name for the run, shown in pickers and titles (an existing run is renamed)")
    extract.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_workspace(extract)

    ls = commands.add_parser("ls", help="list the runs in the workspace")
    ls.add_argument("--json", action="store_true", help="print the runs as JSON")
    ls.add_argument("--series", action="store_true", help="list the checkpoint series instead of the runs")
    _add_workspace(ls)

    series = commands.add_parser("series", help="extract every checkpoint of a training and link the runs as a series")
    series.add_argument("--model", required=True,
                        help="a folder of checkpoint folders, a hub id with --revisions, or digits-mlp:series")
    series.add_argument("--data", required=True, help="demo:NAME, a CSV/JSONL/Parquet/text file or an image folder")
    series.add_argument("--revisions", help="comma-separated checkpoints: hub revisions (step1000,step2000) or "
                        "subfolder names of the folder, in training order")
    series.add_argument("--layers", default="all", help="'all' or comma-separated module paths")
    series.add_argument("--pooling", default="mean", help="mean, first, last, max or tokens")
    series.add_argument("--name", help="a name for the series, shown in pickers and titles")
    series.add_argument("--batch-size", type=int, default=32)
    series.add_argument("--max-length", type=int, help="truncate inputs to this many tokens")
    series.add_argument("--device", help="cpu, cuda or auto (default)")
    series.add_argument("--json", action="store_true", help="print the series as JSON")
    _add_workspace(series)

    layers = commands.add_parser("layers", help="list a model's layers")
    layers.add_argument("--model", required=True)
    layers.add_argument("--all", action="store_true", help="every hookable module, not only the default set")
    layers.add_argument("--json", action="store_true")
    _add_workspace(layers)

    demo = commands.add_parser("demo", help="prepare the demo workspace (bundled models on demo data)")
    demo.add_argument("--heavy", action="store_true",
                      help="prepare the rest (geometry, SAEs, smollm2, untrained twin), reporting to "
                      "<workspace>/demo/progress.json")
    demo.add_argument("--detach", action="store_true", help="with --heavy: run it in a background process")
    demo.add_argument("--after", metavar="URL", help="with --heavy: start once URL answers (the dashboard's health "
                      "check) and stop when it no longer does")
    demo.add_argument("--size", help="full (default) or test (fewer inputs, shorter SAE training); "
                      "default $LAYERSCOPE_DEMO_SIZE")
    _add_workspace(demo)

    report = commands.add_parser(
        "report", help="extract what is missing, run the analyses and write every figure as a report folder + zip"
    )
    report.add_argument("--model", action="append", default=[], help="bundled name, folder or hub id (repeat to compare)")
    report.add_argument("--data", help="demo:NAME or a CSV/JSONL/Parquet/text file (with --model)")
    report.add_argument("--run", action="append", default=[], help="a stored run key to include (repeatable)")
    report.add_argument("--limit", type=int, help="use only the first N inputs of --data")
    report.add_argument("--pooling", default="mean", help="pooling(s) to extract, comma-separated (e.g. mean,tokens)")
    report.add_argument("--layers", default="all", help="'all' or comma-separated module paths")
    report.add_argument("--out", required=True, help="report folder to write (a zip is written beside it)")
    report.add_argument("--screen-style", action="store_true", help="keep the on-screen style instead of the publication style")
    report.add_argument("--formats", default="png,svg,html", help="figure formats: png, svg, pdf, html")
    report.add_argument("--scale", type=float, default=2, help="PNG scale factor (default 2)")
    report.add_argument("--no-zip", action="store_true", help="write the folder only")
    report.add_argument("--batch-size", type=int, default=32)
    report.add_argument("--device", help="cpu, cuda or auto (default)")
    _add_workspace(report)

    dynamics = commands.add_parser(
        "dynamics", help="a checkpoint series' training dynamics: every layer across checkpoints, as a report folder"
    )
    dynamics.add_argument("--series", required=True, help="a stored series' key or name, or with --data a series "
                          "spec to extract first (digits-mlp:series, a folder of checkpoint folders)")
    dynamics.add_argument("--data", help="with a series spec: the dataset to extract every checkpoint on")
    dynamics.add_argument("--metric", help="per-layer metrics, comma-separated: probe, intrinsic_dimension, "
                          "dataset_entropy, effective_rank, curvature (default: those that fit the series)")
    dynamics.add_argument("--similarity", default="linear_cka,mutual_knn",
                          help="similarity to the final checkpoint, comma-separated (default linear_cka,mutual_knn)")
    dynamics.add_argument("--layer", help="the layer whose map is animated across checkpoints (default the middle one)")
    dynamics.add_argument("--column", help="label column probed and colouring the map (default the first)")
    dynamics.add_argument("--out", required=True, help="folder to write (a zip is written beside it)")
    dynamics.add_argument("--formats", default="png,svg,html", help="figure formats: png, svg, pdf, html")
    dynamics.add_argument("--screen-style", action="store_true", help="keep the on-screen style")
    dynamics.add_argument("--scale", type=float, default=2, help="PNG scale factor (default 2)")
    dynamics.add_argument("--no-zip", action="store_true", help="write the folder only")
    dynamics.add_argument("--json", action="store_true", help="print what was written as JSON")
    _add_workspace(dynamics)

    figure = commands.add_parser("figure", help="regenerate figure(s) from a sidecar JSON (or a folder of them)")
    figure.add_argument("--from", dest="source", required=True, help="a figure's .json sidecar, or a report/exports folder")
    figure.add_argument("--out", help="folder for the regenerated files (default: <sidecar folder>/regenerated)")
    figure.add_argument("--formats", help="formats to write (default: those of the original export)")
    figure.add_argument("--scale", type=float, help="PNG scale factor (default: the original's)")
    figure.add_argument("--no-extract", action="store_true", help="do not re-extract runs missing from the workspace")
    _add_workspace(figure)

    verify = commands.add_parser("verify", help="check every entry's checksums; list damaged and orphaned entries and stale locks")
    verify.add_argument("--repair", action="store_true", help="move damaged and orphaned entries to damaged/ and remove stale locks")
    verify.add_argument("--min-age", type=float, default=60.0,
                        help="seconds a temporary file or lock must be old to count as left over (default 60)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_workspace(verify)

    handlers = {"extract": cmd_extract, "ls": cmd_ls, "layers": cmd_layers, "demo": cmd_demo, "report": cmd_report,
                "figure": cmd_figure, "dynamics": cmd_dynamics, "series": cmd_series, "verify": cmd_verify}
    for name, handler in handlers.items():
        commands.choices[name].set_defaults(handler=handler)

    from core.cli_interventions import add_parsers  # direction, erase, steer: each sets its own handler

    add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # its retry warnings would bury the one-line error
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        for name in ("choreographer", "kaleido"):  # the headless browser's chatter (logged with tracebacks)
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return args.handler(args)
    except LayerscopeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk at a write without its own message: still one line
        from core.diskspace import disk_full_error, is_disk_full

        if not is_disk_full(err):
            raise
        print(f"error: {disk_full_error(err.filename or args.workspace or '.', args.command, None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


class _Bar:
    """A tqdm bar on stderr, opened on the first progress report (not for a cache hit or an error)."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar = None

    def __call__(self, done: int, total: int, message: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            # what was done before the first report (e.g. resumed batches) does not count in the rate
            self.bar = tqdm(total=total, initial=done, desc=self.description, unit="batch", file=sys.stderr)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(description: str):
    bar = _Bar(description)
    return bar, bar


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def cmd_extract(args) -> int:
    from core.data import load_dataset
    from core.extract import extract
    from core.models import load_model
    from core.store import Store, check_run_name

    store = Store(args.workspace)
    name = check_run_name(args.name)  # refused before a long extraction, not after it
    dataset = load_dataset(args.data, text_column=args.text_column, label_columns=_split(args.label_columns))
    model = load_model(
        args.model,
        device=args.device,
        workspace=store.root,
        reinit=args.reinit,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
    )
    bar, progress = _bar(f"{model.name} on {dataset.name}")
    try:
        acts = extract(
            model,
            dataset,
            layers=args.layers,
            pooling=args.pooling,
            batch_size=args.batch_size,
            dtype=args.dtype,
            max_length=args.max_length,
            store=store,
            progress=progress,
        )
    finally:
        bar.close()
    if name is not None:
        store.rename_run(acts.key, name)
    summary = {
        "key": acts.key,
        "name": name,
        "path": str(acts.path),
        "model": acts.model_name,
        "dataset": acts.dataset_name,
        "layers": acts.layer_names,
        "pooling": acts.pooling,
        "shape": [acts.meta["n_rows"], max(acts.meta["dims"].values())],
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"key  {acts.key}\npath {acts.path}")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def cmd_ls(args) -> int:
    from core.data.naming import display_name
    from core.store import Store

    store = Store(args.workspace)
    if args.series:
        return _ls_series(store, as_json=args.json)
    runs = store.list_runs()
    rows = [
        {
            "key": run["key"],
            "name": run.get("name") or "",
            "model": run["model"]["name"],
            "dataset": run["dataset"]["name"],
            "dataset_name": display_name(run["dataset"]["name"]),
            "layers": len(run["layers"]),
            "pooling": run["pooling"],
            "shape": [run["n_rows"], max(run["dims"].values())],
            "bytes": run["bytes"],
            "created": run["created"],
        }
        for run in runs
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {store.root}; create one with `python -m core extract --model minilm --data demo:sentences`")
        return 0
    # columns as wide as their longest entry: model names (paths, "(untrained, seed 0)") are never cut
    wm = max(5, *(len(r["model"]) for r in rows))
    wd = max(7, *(len(r["dataset_name"]) for r in rows))
    wn = max(4, *(len(r["name"]) for r in rows))
    print(f"{'key':20}  {'name':{wn}}  {'model':{wm}}  {'dataset':{wd}}  {'layers':>6}  {'pooling':7}  {'shape':>12}  "
          f"{'size':>8}  created")
    for r in rows:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        print(
            f"{r['key']:20}  {r['name']:{wn}}  {r['model']:{wm}}  {r['dataset_name']:{wd}}  {r['layers']:>6}  "
            f"{r['pooling']:7}  {shape:>12}  {_human(r['bytes']):>8}  {r['created']}"
        )
    return 0


def _series_summary(series) -> dict:
    return {"key": series.key, "name": series.name, "model": series.model, "dataset": series.dataset,
            "pooling": series.pooling, "layers": list(series.layers),
            "checkpoints": [{"label": label, "step": step, "run": key}
                            for label, step, key in zip(series.steps, series.step_values, series.run_keys)]}


def cmd_series(args) -> int:
    """Extract every checkpoint on the same inputs and print the series with its checkpoints' runs."""
    from core.series import extract_series
    from core.store import Store

    shown = [-1]

    def progress(done: int, total: int, message: str) -> None:
        if done != shown[0]:  # a line per checkpoint (or training epoch), not per batch
            shown[0] = done
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    series = extract_series(args.model, args.data, layers=args.layers, pooling=args.pooling, store=Store(args.workspace),
                            progress=progress, revisions=_split(args.revisions), name=args.name, device=args.device,
                            batch_size=args.batch_size, max_length=args.max_length)
    summary = _series_summary(series)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"series {series.key}  {series.name}: {len(series)} checkpoints on {series.dataset}")
    width = max(10, *(len(label) for label in series.steps))
    for row in summary["checkpoints"]:
        step = "" if row["step"] is None else f"{row['step']:g}"
        print(f"  {row['label']:{width}}  {step:>8}  {row['run']}")
    return 0


def _ls_series(store, *, as_json: bool) -> int:
    from core.data.naming import display_name
    from core.series import list_series

    found = list_series(store)
    if as_json:
        print(json.dumps([_series_summary(s) for s in found], indent=1))
        return 0
    if not found:
        print(f"no series in {store.root}; create one with "
              "`python -m core series --model digits-mlp:series --data demo:digits`")
        return 0
    wn = max(4, *(len(s.name) for s in found))
    print(f"{'key':20}  {'name':{wn}}  {'checkpoints':>11}  {'pooling':7}  dataset")
    for s in found:
        print(f"{s.key:20}  {s.name:{wn}}  {len(s):>11}  {s.pooling:7}  {display_name(s.dataset)}")
    return 0


def cmd_layers(args) -> int:
    from core.models import load_model
    from core.store import Store

    model = load_model(args.model, workspace=Store(args.workspace).root, device="cpu")
    names = model.layer_names() if args.all else model.default_layers()
    if args.json:
        print(json.dumps(names))
    else:
        print("\n".join(names))
    return 0


def cmd_demo(args) -> int:
    """Prepare the demo workspace: the light part (the runs the dashboard opens on), or with --heavy the rest."""
    from core import demo
    from core.store import Store

    store = Store(args.workspace)
    size = demo.demo_size(args.size)
    if args.heavy:
        return _demo_heavy(args, store, size)
    if args.detach or args.after:
        raise LayerscopeError("--detach and --after go with --heavy")
    bars = []

    def progress_for(step):
        bar, progress = _bar(step.title)
        bars.append(bar)
        return progress

    try:
        prepared = demo.prepare_light(store, size=size, progress_for=progress_for)
    finally:
        for bar in bars:
            bar.close()
    for step in demo.steps("light"):
        print(f"{prepared[step.name]['key']}  {step.title}")
    print(f"demo workspace ready: {store.root}")
    return 0


def _demo_heavy(args, store, size) -> int:
    """The heavy part: here (a line per step), or started in the background with --detach."""
    from core import demo_background
    from core.demo_progress import LOG_PATH, progress_path

    if args.detach:
        pid = demo_background.start_heavy(store, size=size, after=args.after)
        if pid is None:
            print(f"the rest of the demo is already being prepared; progress: {progress_path(store.root)}")
        else:
            print(f"preparing the rest of the demo in the background (pid {pid}); log: {store.root / LOG_PATH}")
        return 0
    with demo_background.heavy_lock(store) as held:
        if not held:
            print(f"another process is preparing the demo in {store.root}", file=sys.stderr)
            return 0
        progress = demo_background.prepare_heavy(store, size=size, after=args.after)
    for step in progress.steps:
        took = f" in {step.seconds:.0f} s" if step.seconds is not None else ""
        print(f"{step.state:8} {step.title}{took}" + (f": {step.error}" if step.error else ""))
    if progress.state != "done":
        print(f"error: preparing the demo {progress.state}: {progress.error}", file=sys.stderr)
        return 1
    print(f"demo ready in {progress.elapsed():.0f} s: {store.root}")
    return 0


def _formats(value: str | None) -> list[str] | None:
    from core.export import check_format

    return [check_format(f) for f in _split(value)] if value else None


def cmd_report(args) -> int:
    """Extract what is missing, run the analyses and write the report (same code as the Export page)."""
    import time

    from core.data import load_dataset
    from core.extract import extract
    from core.models import load_model
    from core.report import write_report
    from core.store import Store

    started = time.perf_counter()
    store = Store(args.workspace)
    formats = _formats(args.formats) or []
    tables = [f for f in formats if f in ("csv", "parquet")] or ["csv", "parquet"]
    formats = [f for f in formats if f not in ("csv", "parquet")]
    if not args.model and not args.run:
        raise LayerscopeError("give --model and --data (or --run KEY) to say what to report")
    if args.model and not args.data:
        raise LayerscopeError("--model needs --data: the dataset to extract it on")
    keys = list(args.run)
    for key in keys:
        store.open_run(key)  # a missing key fails now, with its message, before any work
    models = {}  # loaded once: for extraction, then for the logit lens

    def model_named(name: str):
        if name not in models:
            models[name] = load_model(name, device=args.device, workspace=store.root)
        return models[name]

    if args.model:
        poolings = _split(args.pooling) or ["mean"]
        dataset = load_dataset(args.data, limit=args.limit)
        for name in args.model:
            model = model_named(name)
            for pooling in poolings:
                bar, progress = _bar(f"{model.name} on {dataset.name} ({pooling})")
                try:
                    acts = extract(model, dataset, layers=args.layers, pooling=pooling, batch_size=args.batch_size,
                                   store=store, progress=progress)
                finally:
                    bar.close()
                keys.append(acts.key)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = write_report(store, keys, args.out, publication=not args.screen_style, formats=formats, tables=tables,
                          scale=args.scale, make_zip=not args.no_zip, progress=progress, load_model=model_named)
    for item in result.not_drawn:
        print(f"not drawn: {item['title']}: {item['reason']}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report: {len(result.figures)} figures in {time.perf_counter() - started:.1f} s -> {result.path}"
          + (f" (and {result.zip_path.name})" if result.zip_path else ""))
    return 0


def _find_series(store, given: str):
    """The stored series whose key or name is `given`; LayerscopeError naming those there are."""
    from core.series import list_series

    stored = list_series(store)
    found = [s for s in stored if given in (s.key, s.name)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{s.key} ({s.name})" for s in stored) or "none; extract one first"
    if found:
        raise LayerscopeError(f"--series {given!r} names {len(found)} series; give a key: {known}")
    raise LayerscopeError(f"--series {given!r} is not a series in the workspace {store.root} (give --data to "
                          f"extract a series spec); known: {known}")


def _series_or_extract(store, given: str, data: str | None):
    """The stored series `given` names, or with `data` the series of spec `given` extracted on it (once)."""
    if data is None:
        return _find_series(store, given)
    from core.series import extract_series

    bar, progress = _bar(f"{given} on {data}")
    try:
        return extract_series(given, data, store=store, progress=progress)
    finally:
        bar.close()


def cmd_dynamics(args) -> int:
    """Write a series' dynamics figures (heatmaps, curves, convergence, checkpoint map) with sidecars."""
    from core.report import plan_series_report, write_report
    from core.store import Store

    store = Store(args.workspace)
    series = _series_or_extract(store, args.series, args.data)
    formats = _formats(args.formats) or []
    tables = [f for f in formats if f in ("csv", "parquet")] or ["csv", "parquet"]
    formats = [f for f in formats if f not in ("csv", "parquet")]
    specs = plan_series_report(store, series, metrics=_split(args.metric), similarities=_split(args.similarity) or [],
                               layer=args.layer, column=args.column)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = write_report(store, [], args.out, specs=specs, publication=not args.screen_style, formats=formats,
                          tables=tables, scale=args.scale, make_zip=not args.no_zip, progress=progress,
                          title=f"Training dynamics of {series.name}")
    if args.json:
        print(json.dumps({"series": series.key, "path": str(result.path),
                          "zip": str(result.zip_path) if result.zip_path else None,
                          "figures": [{"name": s["name"], "figure": s["spec"]["figure"], "caption": s["caption"],
                                       "files": {fmt: f["path"] for fmt, f in s["files"].items()}}
                                      for s in result.figures],
                          "not_drawn": result.not_drawn, "notes": result.notes}, indent=1))
        return 0
    for item in result.not_drawn:
        print(f"not drawn: {item['title']}: {item['reason']}", file=sys.stderr)
    print(f"dynamics: {len(result.figures)} figures of {len(series)} checkpoints -> {result.path}"
          + (f" (and {result.zip_path.name})" if result.zip_path else ""))
    return 0


def cmd_figure(args) -> int:
    """Regenerate every figure a sidecar (or a folder of them) describes; say which cannot be."""
    from core.report import find_sidecars, regenerate
    from core.store import Store

    store = Store(args.workspace)
    failed = 0
    for path in find_sidecars(args.source):
        try:
            done = regenerate(path, store, out=args.out, formats=_formats(args.formats), scale=args.scale,
                              extract_missing=not args.no_extract)
        except LayerscopeError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        for warning in done.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for fmt, reason in done.written.get("skipped", {}).items():
            print(f"warning: {fmt.upper()} not written: {reason}", file=sys.stderr)
        if not done.written["files"]:
            failed += 1
            print(f"error: {path.name}: none of the requested formats could be written", file=sys.stderr)
            continue
        files = ", ".join(f["path"] for f in done.written["files"].values())
        same = "same data as the export" if done.matches else "DATA DIFFER from the export"
        print(f"{path.name}: {same} -> {done.folder}: {files}")
    return 2 if failed else 0


def cmd_verify(args) -> int:
    """Exit 0 when no damaged or orphaned entry is left (clean or repaired), 1 otherwise."""
    from core.store import Store
    from core.verify import verify

    report = verify(Store(args.workspace), repair=args.repair, min_age_s=args.min_age)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for problem in report.problems:
            print(problem.line())
        print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
