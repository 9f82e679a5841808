"""`python -m core direction ...` and `python -m core erase ...`: directions at a layer, concept erasure.

Each command is one `cmd_<name>(args)`; `add_parsers(commands)` registers them on the main
parser with their handler. Bad input raises LayerscopeError, which core.cli prints as one
line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from core.errors import LayerscopeError


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default $LAYERSCOPE_WORKSPACE or ./workspace)")


def _add_run(parser: argparse.ArgumentParser) -> None:
    """--run KEY, or --model/--data (extracted when not stored yet)."""
    parser.add_argument("--run", help="key of a stored run")
    parser.add_argument("--model", help="with --data: the run of this model (extracted if not stored)")
    parser.add_argument("--data", help="with --model: demo:NAME or a data file")
    parser.add_argument("--pooling", default="mean", help="with --model/--data: mean (default), first, last, max or tokens")
    parser.add_argument("--limit", type=int, help="with --model/--data: the first N inputs only")
    parser.add_argument("--device", help="cpu, cuda or auto (default)")


def add_parsers(commands) -> None:
    """Register `direction` and `erase` on the main parser's subcommands."""
    direction = commands.add_parser("direction", help="make, list and export directions at a layer")
    actions = direction.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = actions.add_parser("make", help="make a direction from a run (or an SAE feature) and store it")
    _add_run(make)
    make.add_argument("--layer", help="the layer (module path as in the run)")
    make.add_argument("--source", default="mean_difference", help="mean_difference (default), probe, contrast_pca or sae_feature")
    make.add_argument("--label", help="label column of the run's dataset")
    make.add_argument("--positive", help="the class the direction points to")
    make.add_argument("--negative", help="the class it points away from (default: every other class)")
    make.add_argument("--C", type=float, default=1.0, help="probe: inverse L2 strength (default 1.0)")
    make.add_argument("--seed", type=int, default=0, help="probe, contrast_pca: seed (default 0)")
    make.add_argument("--sae", help="sae_feature: key of a stored SAE")
    make.add_argument("--feature", type=int, help="sae_feature: the SAE latent")
    make.add_argument("--name", help="the direction's name (default: made from label, classes and layer)")
    make.add_argument("--json", action="store_true", help="print the direction as JSON")
    _add_workspace(make)
    ls = actions.add_parser("ls", help="list the stored directions, newest first")
    ls.add_argument("--json", action="store_true", help="print them as JSON")
    _add_workspace(ls)
    export = actions.add_parser("export", help="write a stored direction as a safetensors file")
    export.add_argument("key", help="the direction's key (see `direction ls`)")
    export.add_argument("--out", required=True, help="the file to write (.safetensors)")
    _add_workspace(export)
    direction.set_defaults(handler=cmd_direction)

    erase = commands.add_parser("erase", help="erase a concept at a layer; probe accuracy before and after")
    _add_run(erase)
    erase.add_argument("--layer", required=True, help="the layer to erase at")
    erase.add_argument("--label", required=True, help="the concept: a categorical label column")
    erase.add_argument("--method", default="leace", help="leace (default) or mean_difference")
    erase.add_argument("--later", help="later layers to probe too: 'all' or comma-separated layers (default none)")
    erase.add_argument("--n-folds", type=int, default=5, help="probe folds (default 5)")
    erase.add_argument("--C", type=float, default=1.0, help="probe inverse L2 strength (default 1.0)")
    erase.add_argument("--seed", type=int, default=0, help="fold seed (default 0)")
    erase.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_workspace(erase)
    erase.set_defaults(handler=cmd_erase)
    add_steer_parser(commands)


def _open_run(args, store):
    """(the run, its model if it was loaded here) from --run, or --model/--data (extracted when missing)."""
    from core.data import load_dataset
    from core.extract import extract
    from core.models import load_model

    if args.run:
        if args.model or args.data:
            raise LayerscopeError("give either --run KEY or --model with --data, not both")
        return store.open_run(args.run), None
    if not (args.model and args.data):
        raise LayerscopeError("give --run KEY (see `python -m core ls`) or --model with --data")
    model = load_model(args.model, device=args.device, workspace=store.root)
    acts = extract(model, load_dataset(args.data, limit=args.limit), pooling=args.pooling, store=store)
    return acts, model


def _summary(key: str, direction) -> dict:
    return {"key": key, "name": direction.name, "source": direction.source, "layer": direction.layer,
            "model": direction.model.get("name"), "width": direction.width, "scale": direction.scale,
            "provenance": direction.provenance}


def cmd_direction(args) -> int:
    """direction make | ls | export."""
    from core.interventions.directions import make_direction
    from core.interventions.stored import export_direction, list_directions, load_direction, save_direction
    from core.store import Store

    store = Store(args.workspace)
    if args.action == "ls":
        found = [_summary(key, d) for key, d in list_directions(store)]
        if args.json:
            print(json.dumps(found, indent=1, default=str))
        elif not found:
            print("no directions yet: make one with `python -m core direction make --run KEY --layer L --label ...`")
        for item in [] if args.json else found:
            print(f"{item['key']}  {item['source']:<15} {item['model']}  {item['name']}")
        return 0
    if args.action == "export":
        path = export_direction(load_direction(store, args.key), args.out)
        print(f"direction {args.key} -> {path}")
        return 0
    if args.source == "sae_feature":
        acts = None
    else:
        if not args.layer or not args.label:
            raise LayerscopeError(f"--source {args.source} needs --layer and --label")
        acts, _ = _open_run(args, store)
    direction = make_direction(args.source, acts, args.layer, args.label, args.positive, args.negative, C=args.C,
                               seed=args.seed, store=store, sae_key=args.sae, feature=args.feature, name=args.name)
    key = save_direction(store, direction)
    if args.json:
        print(json.dumps(_summary(key, direction), indent=1, default=str))
    else:
        print(f"key  {key}\nname {direction.name}")
    return 0


def cmd_erase(args) -> int:
    """Erase --label at --layer; print accuracy before/after per layer and what the erasure cost."""
    from core.interventions.erase import erase_concept
    from core.models import load_model
    from core.runs import check_layer
    from core.store import Store

    store = Store(args.workspace)
    acts, model = _open_run(args, store)
    check_layer(acts, args.layer)
    later = None if not args.later else "all" if args.later == "all" else [p.strip() for p in args.later.split(",") if p.strip()]
    if model is None and (later or acts.meta["model"].get("is_causal_lm")):
        model = load_model(acts.model_name, device=args.device, workspace=store.root)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = erase_concept(model, acts, args.layer, args.label, method=args.method, later_layers=later,
                           n_folds=args.n_folds, C=args.C, seed=args.seed, progress=progress, store=store)
    rows = [{"layer": name, "before": float(b), "after": float(a), "chance": result.chance}
            for name, b, a in zip(result.layer_names, result.accuracy_before, result.accuracy_after)]
    figures = {"mean_squared_change": result.mean_squared_change,
               "mean_difference_change": result.mean_difference_change,
               "relative_change": result.relative_change,
               "loss_before": None if math.isnan(result.loss_before) else result.loss_before,
               "loss_after": None if math.isnan(result.loss_after) else result.loss_after}
    if args.json:
        print(json.dumps({"run": result.run_key, "model": result.model_name, "method": result.method,
                          "label": result.label, "layers": rows, **figures, "params": result.params},
                         indent=1, default=str))
        return 0
    print(f"{result.method} erasure of {result.label!r} at {result.layer} ({result.model_name}, run {result.run_key})")
    print(f"{'layer':<28} {'before':>7} {'after':>7} {'chance':>7}")
    for row in rows:
        print(f"{row['layer']:<28} {row['before']:>7.3f} {row['after']:>7.3f} {row['chance']:>7.3f}")
    print(f"mean squared change {result.mean_squared_change:.4g} (mean-difference projection "
          f"{result.mean_difference_change:.4g}); share of the layer's variance moved {result.relative_change:.3f}")
    if figures["loss_before"] is not None:
        print(f"next-token loss {result.loss_before:.4f} -> {result.loss_after:.4f} nats")
    return 0


def add_steer_parser(commands) -> None:
    """Register `steer` on the main parser's subcommands."""
    steer = commands.add_parser("steer", help="generate greedily with alpha x a direction added at its layer")
    steer.add_argument("--model", required=True, help="a causal LM (e.g. smollm2)")
    steer.add_argument("--direction", help="key of a stored direction (see `direction ls`)")
    steer.add_argument("--run", help="instead of --direction: key of the run to make the direction from")
    steer.add_argument("--layer", help="with --run: the layer to steer at")
    steer.add_argument("--source", default="mean_difference", help="with --run: mean_difference (default), probe or contrast_pca")
    steer.add_argument("--label", help="with --run: label column the direction contrasts")
    steer.add_argument("--positive", help="with --run: the class the direction points to")
    steer.add_argument("--negative", help="with --run: the class it points away from (default: every other class)")
    steer.add_argument("--prompt", action="append", default=[], help="a prompt to continue (repeatable)")
    steer.add_argument("--prompts-file", help="a text file with one prompt per line")
    steer.add_argument("--alphas", default="-1,0,1",
                       help="comma-separated multiples of the prompts' median token norm at the layer "
                            "(default -1,0,1; write --alphas=-2,0,2)")
    steer.add_argument("--scale", default="prompts",
                       help="what alpha = 1 adds: prompts (default: the prompts' median token norm at the layer) "
                            "or run (the direction's scale: its run's mean norm)")
    steer.add_argument("--position", default="all", help="all (default: every position) or last (the newest token of each step)")
    steer.add_argument("--max-new-tokens", type=int, default=20, help="tokens generated per prompt (default 20)")
    steer.add_argument("--top-k", type=int, default=10, help="tokens listed as gaining / losing most (default 10)")
    steer.add_argument("--readout", help="LABEL:CLASS, e.g. sentiment:positive: a probe fitted on the run reads P(CLASS)")
    steer.add_argument("--device", help="cpu, cuda or auto (default)")
    steer.add_argument("--json", action="store_true", help="print the whole result as JSON")
    _add_workspace(steer)
    steer.set_defaults(handler=cmd_steer)


def _steer_prompts(args) -> list[str]:
    """--prompt values, then the non-empty lines of --prompts-file."""
    from pathlib import Path

    prompts = list(args.prompt)
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise LayerscopeError(f"--prompts-file {args.prompts_file!r} is not a file")
        prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise LayerscopeError("give at least one --prompt TEXT (or --prompts-file FILE)")
    return prompts


def _steer_alphas(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LayerscopeError(f"--alphas {text!r} must be comma-separated numbers, e.g. -1,0,1") from None


def cmd_steer(args) -> int:
    """Steer --model along a direction; print each alpha's continuations, mean KL and probe readout."""
    from core.interventions.directions import make_direction
    from core.interventions.readout import fit_readout
    from core.interventions.steer import steer
    from core.interventions.stored import direction_key, load_direction
    from core.models import load_model
    from core.store import Store

    store = Store(args.workspace)
    prompts, alphas = _steer_prompts(args), _steer_alphas(args.alphas)
    if bool(args.direction) == bool(args.run):
        raise LayerscopeError("give either --direction KEY or --run KEY with --layer, --label and --positive")
    model = load_model(args.model, device=args.device, workspace=store.root)
    if not model.is_causal_lm:
        raise LayerscopeError(f"steering needs a causal LM; {model.name} is an encoder")
    acts = store.open_run(args.run) if args.run else None
    if acts is not None:
        if not args.layer or not args.label:
            raise LayerscopeError(f"--run with --source {args.source} needs --layer and --label")
        direction = make_direction(args.source, acts, args.layer, args.label, args.positive, args.negative, store=store)
        key = direction_key(direction)
    else:
        key = args.direction
        direction = load_direction(store, key)
    readout = None
    if args.readout:
        label, sep, positive = args.readout.partition(":")
        if not sep or not label or not positive:
            raise LayerscopeError(f"--readout {args.readout!r} must be LABEL:CLASS, e.g. sentiment:positive")
        run_key = acts.key if acts is not None else direction.provenance.get("run")
        if not run_key:
            raise LayerscopeError("--readout needs a run to fit the probe on: give --run KEY")
        readout = fit_readout(acts or store.open_run(run_key), label, positive)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = steer(model, direction, prompts, alphas, position=args.position, scale=args.scale,
                   max_new_tokens=args.max_new_tokens,
                   top_k=args.top_k, readout=readout, direction_key=key, store=store,
                   progress=None if args.json else progress)
    if args.json:
        print(json.dumps(_steering_json(result), indent=1, default=str))
        return 0
    print(f"steering {result.model_name} along {result.direction_name or key} at {result.layer} "
          f"(position={result.position}, scale {result.scale:.4g} per unit alpha)")
    for i, alpha in enumerate(result.alphas):
        read = ""
        if result.readout_label:
            stream = ", ".join(f"{layer} {value:.3f}" for layer, value in zip(result.readout_layers, result.readout[i]))
            read = (f"; P({result.readout_label}={result.readout_class}) stream: {stream}; "
                    f"continuations: {result.continuation_readout[i]:.3f}")
        print(f"\nalpha {alpha:g}: mean KL {result.kl[i].mean():.4f} nats{read}")
        gains = [repr(str(t)) for t, shift in zip(result.gained_tokens[i][:5], result.gained_shift[i]) if shift > 0]
        losses = [repr(str(t)) for t, shift in zip(result.lost_tokens[i][:5], result.lost_shift[i]) if shift < 0]
        print(f"  gains: {', '.join(gains) or 'none'}; loses: {', '.join(losses) or 'none'}")
        for prompt, text in zip(result.prompts, result.continuations[i]):
            print(f"  {prompt!r} -> {str(text)!r}")
    return 0


def _steering_json(result) -> dict:
    """Every field of a SteeringResult as plain JSON (arrays as nested lists, NaN as null)."""
    import dataclasses

    import numpy as np

    def plain(value):
        if isinstance(value, np.ndarray):
            return plain(value.tolist())
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    return {field.name: plain(getattr(result, field.name)) for field in dataclasses.fields(result)}
