"""What the Interventions page's forms mean: alphas and prompts read from text, defaults, the runs each tab opens on.

Pure functions over the workspace's run list and stored directions; no streamlit. Each check
raises LayerscopeError naming the value and what is allowed, which the page shows as one st.error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import LayerscopeError
from dashboard.run_choice import CAUSAL_LM, Need, choose_run, is_tokens

Run = Mapping[str, Any]

SOURCE_LABELS = {"probe": "probe", "mean_difference": "mean difference", "contrast_pca": "contrast pairs PCA",
                 "sae_feature": "SAE feature"}
METHOD_LABELS = {"leace": "LEACE", "mean_difference": "mean-difference projection"}
DEFAULT_ALPHAS = "-0.5, 0, 0.5"  # in units of the prompts' median token norm at the layer: +-0.5 moves smollm2 visibly, +-1 starts to break it
DEFAULT_PROMPTS = 3  # prompts taken from the dataset
PROMPT_WORDS = 5  # each default prompt is the first words of an input: the model continues it
MAX_ALPHAS = 9
MAX_PROMPTS = 16
STEER_LABEL = ("sentiment", "positive", "negative")  # the contrast the Steer tab proposes when the run has it
ERASE_LABEL = "topic"  # the concept the Erase tab proposes when the run has it


class Keys:
    """Session-state keys of the Interventions page (page-local)."""

    DIRECTION_MADE = "interventions_direction_made"  # key of the direction just stored
    STEER_REQUEST = "interventions_steer_request"  # the steering asked for (a tuple)
    STEER_STOPPED = "interventions_steer_stopped"
    ERASE_REQUEST = "interventions_erase_request"  # the erasure asked for (a tuple)
    ERASE_STOPPED = "interventions_erase_stopped"
    PROMPTS = "interventions_prompts"
    ALPHAS = "interventions_alphas"


def parse_alphas(text: str) -> list[float]:
    """Alphas from "-1, 0, 1" (commas or spaces); LayerscopeError for a non-number, a non-finite value or too many."""
    items = [item for item in text.replace(",", " ").split() if item]
    if not items:
        raise LayerscopeError(f"alphas={text!r} must list at least one number, e.g. {DEFAULT_ALPHAS!r}")
    alphas = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise LayerscopeError(f"alpha={item!r} must be a number, e.g. {DEFAULT_ALPHAS!r}") from None
        if not math.isfinite(value):
            raise LayerscopeError(f"alpha={item!r} must be a finite number")
        alphas.append(value)
    if len(alphas) > MAX_ALPHAS:
        raise LayerscopeError(f"alphas: {len(alphas)} given; at most {MAX_ALPHAS} are allowed")
    return list(dict.fromkeys(alphas))  # a repeated alpha would only repeat its column


def parse_prompts(text: str) -> list[str]:
    """One prompt per non-blank line; LayerscopeError for none or too many."""
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise LayerscopeError("prompts: none given; write one prompt per line")
    if len(prompts) > MAX_PROMPTS:
        raise LayerscopeError(f"prompts: {len(prompts)} given; at most {MAX_PROMPTS} are allowed")
    return prompts


def default_prompts(texts: Sequence[str], count: int = DEFAULT_PROMPTS, words: int = PROMPT_WORDS) -> str:
    """The first words of the first `count` inputs, one per line: prompts the model continues."""
    return "\n".join(" ".join(str(t).split()[:words]) for t in list(texts)[:count] if str(t).strip())


def middle_layer(layers: Sequence[str]) -> str:
    """The layer in the middle of a run's layers (where steering and erasure are usually tried first)."""
    return layers[len(layers) // 2]


def later_layers(layers: Sequence[str], layer: str) -> list[str]:
    """The layers after `layer`, in the run's order."""
    return list(layers[list(layers).index(layer) + 1:])


POOLED = Need(lambda run: not is_tokens(run), "a run with one vector per input (mean-pooled)", pooling="mean")


def steer_run(runs: Sequence[Run], current: str | None) -> str | None:
    """The run the Steer tab opens on: a causal LM's run (smollm2 on a fresh demo workspace)."""
    return choose_run(runs, current, CAUSAL_LM, prefer=lambda r: r["model"]["name"] == "smollm2")


def erase_run(runs: Sequence[Run], current: str | None) -> str | None:
    """The run the Erase tab opens on: a pooled run (minilm on demo:sentences on a fresh demo workspace)."""
    return choose_run(runs, current, POOLED, prefer=lambda r: r["model"]["name"] == "minilm")


def steer_hint(current: Run | None) -> str:
    """What to do when no causal LM run is stored."""
    return ("Steering needs a run of a causal language model (encoders do not generate). Extract one on the "
            "Workspace page, or run `python -m core extract --model smollm2 --data demo:sentences`.")


def check_steerable(direction, models: Sequence[str]) -> None:
    """LayerscopeError when a direction's model cannot generate (an encoder): steering needs a causal LM."""
    model = direction.model
    if not model.get("is_causal_lm"):
        allowed = ", ".join(models) or "none stored yet (extract smollm2)"
        raise LayerscopeError(
            f"direction {direction.name!r} is of {model.get('name')!r}, which does not generate text (an encoder); "
            f"steering needs a direction of a causal language model: {allowed}"
        )


def direction_rows(directions: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """A table row per stored direction: what it is and where it came from."""
    rows = []
    for key, d in directions:
        p = d.provenance
        made_of = (f"SAE {str(p.get('sae', ''))[:8]} feature {p.get('feature')}" if d.source == "sae_feature"
                   else f"{p.get('label')}: {p.get('positive')} vs {p.get('negative') or 'rest'}")
        rows.append({"name": d.name, "model": d.model.get("name"), "layer": d.layer,
                     "source": SOURCE_LABELS.get(d.source, d.source), "made of": made_of,
                     "run": str(p.get("run", ""))[:8], "dataset": p.get("dataset"), "width": d.width,
                     "scale": round(float(d.scale), 3), "key": key})
    return rows


def steer_default_classes(label_columns: Sequence[str], classes_of) -> tuple[str | None, str | None, str | None]:
    """(label, positive, negative) the Steer tab proposes for a quick direction: sentiment positive - negative if there."""
    label, positive, negative = STEER_LABEL
    if label in label_columns and {positive, negative} <= set(classes_of(label)):
        return label, positive, negative
    for column in label_columns:
        classes = list(classes_of(column))
        if len(classes) >= 2:
            return column, classes[0], classes[1]
    return None, None, None
