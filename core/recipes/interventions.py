"""Intervention figures: steering a causal LM along a stored direction (Interventions page, Steer) and erasing a
concept at a layer (Erase).

Steering recipes name a direction stored in the workspace (`direction`: its key) and take no
run, or the run the readout probe is fitted on; erasure recipes take the run the eraser is
fitted on. Results go through the store, so a page, a report and `python -m core figure
--from` draw the same numbers without computing them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.errors import LayerscopeError
from core.progress import Progress
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys

PAGE = "views/interventions.py"
MAX_READOUT_LAYERS = 4  # the steered layer and up to this many - 1 later layers, evenly spaced


def readout_layers(layer_names: Sequence[str], layer: str, count: int = MAX_READOUT_LAYERS) -> list[str]:
    """The steered layer and up to `count` - 1 later layers of a run, evenly spaced, the last one included.

    A run without the steered layer itself reads from its layers after it (`model.layers.12` is after
    `model.layers.10`: the same module path with a larger block number).
    """
    names = list(layer_names)
    if layer in names:
        first, later = [layer], names[names.index(layer) + 1:]
    else:
        first, later = [], [name for name in names if _block_after(name, layer)]
        if not later:
            raise LayerscopeError(f"the run has no layer at or after the steered layer {layer!r} (it has "
                                  f"{', '.join(names)}); pick a run holding later layers for the readout")
    if len(later) > count - len(first):
        picks = np.unique(np.round(np.linspace(0, len(later) - 1, count - len(first))).astype(int))
        later = [later[i] for i in picks]
    return [*first, *later]


def _block_after(name: str, layer: str) -> bool:
    """Whether `name` is a later block than `layer` of the same stack ("model.layers.12" after "model.layers.10")."""
    stem, _, number = name.rpartition(".")
    layer_stem, _, layer_number = layer.rpartition(".")
    return stem == layer_stem and number.isdigit() and layer_number.isdigit() and int(number) > int(layer_number)


def steering_result(context: Context, runs: Sequence[str], *, direction: str, prompts: Sequence[str],
                    alphas: Sequence[float], position: str = "all", max_new_tokens: int = 20, top_k: int = 10,
                    readout_label: str | None = None, readout_class: str | None = None,
                    progress: Progress | None = None):
    """The SteeringResult of a stored direction (computed once per context; the model loaded once).

    runs: [] or [the run the readout probe is fitted on] (default: the direction's own run).
    """
    from core.interventions.readout import fit_readout
    from core.interventions.steer import steer
    from core.interventions.stored import load_direction

    key = ("steering", direction, tuple(runs), tuple(prompts), tuple(float(a) for a in alphas), position,
           max_new_tokens, top_k, readout_label, readout_class)

    def compute():
        vector = load_direction(context.store, direction)
        model = context.model(vector.model["name"])
        readout = None
        if readout_label:
            run = runs[0] if runs else vector.provenance.get("run")
            if not run:
                raise LayerscopeError("readout_label needs a run to fit the probe on; give one run key")
            acts = context.run(run)
            readout = fit_readout(acts, readout_label, readout_class, readout_layers(acts.layer_names, vector.layer))
        return steer(model, vector, list(prompts), list(alphas), position=position, max_new_tokens=max_new_tokens,
                     top_k=top_k, readout=readout, progress=progress, store=context.store, direction_key=direction)

    return context.cached(key, compute)


def _steering_analysis(result) -> dict[str, Any]:
    return {"metric": "steering: h <- h + alpha * scale * v at one layer, greedy decoding",
            "variant": f"position={result.position}, direction={result.direction_name}",
            "parameters": {"layer": result.layer, "alphas": list(map(float, result.alphas)), "size": result.scale,
                           "position": result.position, "readout": f"{result.readout_label}={result.readout_class}",
                           **result.params},
            "model": result.model_name, "seeds": {}}


STEERING_PARAMS = ("direction", "prompts", "alphas", "position", "max_new_tokens", "top_k", "readout_label",
                   "readout_class")  # what a steering recipe passes on to steering_result


def steering_params(arguments: dict) -> dict:
    """The steering parameters among a steering recipe's arguments (its locals())."""
    return {name: arguments[name] for name in STEERING_PARAMS}


def _alphas_words(result) -> str:
    return ", ".join(f"{float(a):g}" for a in result.alphas)


def _steering_figure(kind: str, draw, caption: str, table_of, context: Context, runs, params: dict,
                     title: str | None) -> BuiltFigure:
    result = steering_result(context, runs, **params)
    fig = draw(result, title=title)
    text = caption.format(model=result.model_name, direction=result.direction_name, layer=result.layer,
                          alphas=_alphas_words(result), scale=result.scale, position=result.position,
                          n=len(result.prompts), label=result.readout_label, cls=result.readout_class,
                          tokens=result.params.get("max_new_tokens", ""))
    return BuiltFigure(fig, table_of(result), _steering_analysis(result), text,
                       f"{kind}-{result.model_name}-{result.layer}", result=result)


def _continuations_table(result) -> pd.DataFrame:
    rows = [{"alpha": float(a), "prompt": p, "continuation": str(result.continuations[i, j]),
             "kl_nats": float(result.kl[i, j])}
            for i, a in enumerate(result.alphas) for j, p in enumerate(result.prompts)]
    return pd.DataFrame(rows)


def _readout_table(result) -> pd.DataFrame:
    table = pd.DataFrame({"alpha": np.asarray(result.alphas, dtype=float),
                          "continuations_reread": np.asarray(result.continuation_readout, dtype=float)})
    for r, layer in enumerate(result.readout_layers):
        table[layer] = np.asarray(result.readout, dtype=float)[:, r]
    return table


def _tokens_table(result) -> pd.DataFrame:
    rows = []
    for i, a in enumerate(result.alphas):
        for kind, tokens, shifts in (("gained", result.gained_tokens[i], result.gained_shift[i]),
                                     ("lost", result.lost_tokens[i], result.lost_shift[i])):
            rows += [{"alpha": float(a), "kind": kind, "token": str(t), "shift_nats": float(s)}
                     for t, s in zip(tokens, shifts)]
    return pd.DataFrame(rows)


@register("steering_continuations", page=PAGE)
def steering_continuations_recipe(context: Context, runs, *, direction: str, prompts: Sequence[str],
                                  alphas: Sequence[float], position: str = "all", max_new_tokens: int = 20,
                                  top_k: int = 10, readout_label: str | None = None, readout_class: str | None = None,
                                  title: str | None = None) -> BuiltFigure:
    """The Interventions page's greedy continuations of each prompt, one column per alpha."""
    from core.figures.interventions import steering_continuations

    params = steering_params(locals())
    caption = ("Greedy continuations ({tokens} new tokens) of {model} with alpha x {scale:.3g} x the unit direction "
               "'{direction}' added at {layer} (positions: {position}), alphas {alphas}.")
    return _steering_figure("steering-continuations", steering_continuations, caption, _continuations_table,
                            context, runs, params, title)


@register("steering_readout", page=PAGE)
def steering_readout_recipe(context: Context, runs, *, direction: str, prompts: Sequence[str],
                            alphas: Sequence[float], readout_label: str, readout_class: str, position: str = "all",
                            max_new_tokens: int = 20, top_k: int = 10, title: str | None = None) -> BuiltFigure:
    """The Interventions page's probe readout of the steered residual stream against alpha, per readout layer."""
    from core.figures.interventions import steering_readout

    params = steering_params(locals())
    caption = ("Logistic probe P({label} = {cls}) read from the residual stream of the generated tokens of {model} "
               "steered along '{direction}' at {layer}, and from the continuations re-read without steering "
               "(dashed); mean over {n} prompts, alphas {alphas} (x {scale:.3g}).")
    return _steering_figure("steering-readout", steering_readout, caption, _readout_table, context, runs, params,
                            title)


@register("steering_kl", page=PAGE)
def steering_kl_recipe(context: Context, runs, *, direction: str, prompts: Sequence[str], alphas: Sequence[float],
                       position: str = "all", max_new_tokens: int = 20, top_k: int = 10,
                       readout_label: str | None = None, readout_class: str | None = None,
                       title: str | None = None) -> BuiltFigure:
    """The Interventions page's KL divergence of the steered next-token distribution to the unsteered one."""
    from core.figures.interventions import steering_kl

    params = steering_params(locals())
    caption = ("KL(p_steered || p_unsteered) of the first generated token of {model} (nats), mean over {n} prompts "
               "with its range, steering along '{direction}' at {layer}, alphas {alphas} (x {scale:.3g}).")
    return _steering_figure("steering-kl", steering_kl, caption,
                            lambda r: pd.DataFrame({"alpha": np.asarray(r.alphas, dtype=float),
                                                    "mean_kl_nats": np.asarray(r.kl, dtype=float).mean(axis=1)}),
                            context, runs, params, title)


@register("steering_tokens", page=PAGE)
def steering_tokens_recipe(context: Context, runs, *, direction: str, prompts: Sequence[str],
                           alphas: Sequence[float], position: str = "all", max_new_tokens: int = 20, top_k: int = 10,
                           readout_label: str | None = None, readout_class: str | None = None,
                           title: str | None = None) -> BuiltFigure:
    """The Interventions page's tokens whose next-token log-probability rose and fell most, per alpha."""
    from core.figures.interventions import steering_tokens

    params = steering_params(locals())
    caption = ("Change of the first generated token's log-probability (nats, mean over {n} prompts) of {model} "
               "steered along '{direction}' at {layer}: the tokens that gained and lost most per alpha.")
    return _steering_figure("steering-tokens", steering_tokens, caption, _tokens_table, context, runs, params,
                            title)


# ----- erasure -----------------------------------------------------------------------------------------
def erasure_result(context: Context, runs: Sequence[str], *, layer: str, label: str, method: str = "leace",
                   later_layers: Sequence[str] | None = None, n_folds: int = 5, C: float = 1.0, seed: int = 0,
                   progress: Progress | None = None):
    """The ErasureResult of erasing `label` at `layer` of a run (through the store; the model loaded for causal LMs)."""
    from core.interventions.erase import erase_concept

    (key,) = run_keys(runs, "erasure")
    later = tuple(later_layers) if later_layers is not None else None

    def compute():
        acts = context.run(key)
        # later layers are re-extracted with the eraser in place, and a causal LM's loss is measured: both need it
        needs_model = bool(later) or bool(acts.meta["model"].get("is_causal_lm"))
        model = context.model(acts.model_name) if needs_model else None
        return erase_concept(model, acts, layer, label, method=method, later_layers=later, n_folds=n_folds, C=C,
                             seed=seed, progress=progress, store=context.store)

    return context.cached(("erasure", key, layer, label, method, later, n_folds, C, seed), compute)


def _erasure_analysis(result) -> dict[str, Any]:
    return {"metric": "cross-validated logistic probe accuracy before / after erasure",
            "variant": f"method={result.method} at {result.layer}",
            "parameters": {"layer": result.layer, "label": result.label, "method": result.method, **result.params},
            "model": result.model_name, "run": result.run_key, "chance": result.chance,
            "mean_squared_change": result.mean_squared_change,
            "mean_difference_change": result.mean_difference_change, "seeds": {"folds": result.params.get("seed", 0)}}


def erasure_caption(result) -> str:
    """The erasure in words: accuracy before and after at the erased layer, and how far each method moved the inputs."""
    from core.figures.interventions import METHOD_NAMES

    method = METHOD_NAMES.get(result.method, result.method)
    text = (f"Erasing '{result.label}' from {result.model_name} at {result.layer} with {method}: probe accuracy "
            f"{result.accuracy_before[0]:.3f} -> {result.accuracy_after[0]:.3f} (chance {result.chance:.3f}). "
            f"Mean squared change of the activations {result.mean_squared_change:.4g}")
    if result.method != "mean_difference":
        text += f" ({METHOD_NAMES['mean_difference']}: {result.mean_difference_change:.4g})"
    text += f", {100 * result.relative_change:.1f}% of the layer's variance."
    if np.isfinite(result.loss_before):
        text += f" Next-token loss {result.loss_before:.3f} -> {result.loss_after:.3f} nats."
    return text


@register("erasure_accuracy", page=PAGE)
def erasure_accuracy_recipe(context: Context, runs, *, layer: str, label: str, method: str = "leace",
                            later_layers: Sequence[str] | None = None, n_folds: int = 5, C: float = 1.0,
                            seed: int = 0, title: str | None = None) -> BuiltFigure:
    """The Interventions page's probe accuracy at the erased layer and later ones, before and after, with chance."""
    from core.figures.interventions import erasure_accuracy

    result = erasure_result(context, runs, layer=layer, label=label, method=method, later_layers=later_layers,
                            n_folds=n_folds, C=C, seed=seed)
    table = pd.DataFrame({"layer": list(result.layer_names), "accuracy_before": result.accuracy_before,
                          "accuracy_after": result.accuracy_after, "chance": result.chance})
    return BuiltFigure(erasure_accuracy(result, title=title), table, _erasure_analysis(result),
                       erasure_caption(result), f"erasure-{result.method}-{result.model_name}-{result.label}",
                       result=result)


@register("erasure_change", page=PAGE)
def erasure_change_recipe(context: Context, runs, *, layer: str, label: str, method: str = "leace",
                          later_layers: Sequence[str] | None = None, n_folds: int = 5, C: float = 1.0,
                          seed: int = 0, title: str | None = None) -> BuiltFigure:
    """The Interventions page's mean squared change of the activations: the method beside mean-difference projection."""
    from core.figures.interventions import erasure_change

    result = erasure_result(context, runs, layer=layer, label=label, method=method, later_layers=later_layers,
                            n_folds=n_folds, C=C, seed=seed)
    fig = erasure_change(result, title=title)
    table = pd.DataFrame({"method": list(fig.data[0].x), "mean_squared_change": list(fig.data[0].y)})
    return BuiltFigure(fig, table, _erasure_analysis(result), erasure_caption(result),
                       f"erasure-change-{result.method}-{result.model_name}-{result.label}", result=result)


# ----- reports -----------------------------------------------------------------------------------------
def stored_intervention_specs(store, run_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Specs of the steering and erasure figures already computed for these runs (a report shows what was asked for).

    An erasure belongs to the run it was fitted on; a steering result to the run its readout
    probe was fitted on, or its direction's run. Nothing is computed here.
    """
    from core.export.sidecar import figure_spec

    keys = set(run_keys)
    specs: list[dict[str, Any]] = []
    for meta in store.list_entries("erasure"):
        p = meta.get("params") or {}
        if p.get("run") in keys:
            params = {name: p[name] for name in ("layer", "label", "method", "later_layers", "n_folds", "C", "seed")
                      if name in p}
            specs += [figure_spec(kind, [p["run"]], **params) for kind in ("erasure_accuracy", "erasure_change")]
    for meta in store.list_entries("steering"):
        p = meta.get("params") or {}
        readout = p.get("readout") or {}
        run = readout.get("run")
        direction_run = _direction_run(store, p.get("direction", ""))
        if run not in keys and direction_run not in keys:
            continue
        params = {"direction": p.get("direction"), "prompts": p.get("prompts"), "alphas": p.get("alphas"),
                  "position": p.get("position", "all"), "max_new_tokens": p.get("max_new_tokens", 20),
                  "top_k": p.get("top_k", 10), "readout_label": readout.get("label"),
                  "readout_class": readout.get("positive")}
        runs = [run] if run else []
        kinds = ["steering_continuations", "steering_kl", "steering_tokens"]
        kinds += ["steering_readout"] if readout else []
        specs += [figure_spec(kind, runs, **params) for kind in kinds]
    return specs


def _direction_run(store, key: str) -> str | None:
    """The run a stored direction was made from, or None when it is not stored (any more)."""
    from core.interventions.stored import load_direction

    try:
        return load_direction(store, key).provenance.get("run")
    except LayerscopeError:
        return None
