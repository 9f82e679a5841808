"""Which run a page opens on: one that fits what the page shows, as close as possible to the current run.

Pure functions over the workspace's run list (`Store.list_runs` metadata, newest first); no streamlit.
A page states its `Need`; `choose_run` keeps the current run when it fits (the user's pick wins), and
otherwise takes the fitting run most like it: same model and inputs, then same inputs, then same model,
trained before untrained, then the newest. When no run fits, `Need.hint` says what to extract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.demo import GEOMETRY_METRICS
from core.runs import is_untrained

Run = Mapping[str, Any]  # a run's metadata, as Store.list_runs gives it
FALLBACK = ("minilm", "demo:sentences")  # what the hints extract when the current run cannot be re-extracted


def is_tokens(run: Run) -> bool:
    """Extracted with pooling="tokens" (a vector per token)."""
    return run["pooling"] == "tokens"


def is_causal_lm(run: Run) -> bool:
    """A trained causal language model's run (its logit lens reads the model's own unembedding)."""
    return bool(run["model"].get("is_causal_lm")) and not is_untrained(run)


@dataclass(frozen=True)
class Need:
    """What a page needs of a run."""

    fits: Callable[[Run], bool]  # the runs the page can show
    what: str  # such a run, as a sentence says it
    pooling: str | None = None  # the pooling the extraction command asks for (None: its default)
    model: str | None = None  # the model it extracts (None: the current run's model)

    def hint(self, current: Run | None = None) -> str:
        """What to do when no run fits: the exact command, or the Workspace page."""
        return (f"This page needs {self.what}. Extract one on the Workspace page, or run "
                f"`{extract_command(current, pooling=self.pooling, model=self.model)}`.")


ANY = Need(lambda run: True, "a run")
TOKENS = Need(is_tokens, "a run extracted with pooling='tokens' (a vector per token)", pooling="tokens")
CAUSAL_LM = Need(is_causal_lm, "a run of a causal language model", model="smollm2")


def extract_command(current: Run | None = None, *, pooling: str | None = None, model: str | None = None) -> str:
    """`python -m core extract ...` for the current run's model and bundled dataset (else minilm on demo:sentences)."""
    name, data = FALLBACK
    if current is not None and not is_untrained(current) and str(current["dataset"]["name"]).startswith("demo:"):
        name, data = current["model"]["name"], current["dataset"]["name"]
    command = f"python -m core extract --model {model or name} --data {data}"
    return command + (f" --pooling {pooling}" if pooling else "")


def choose_run(runs: Sequence[Run], current: str | None, need: Need = ANY, *,
               prefer: Callable[[Run], bool] | None = None) -> str | None:
    """Key of the run a page opens on, or None when no run fits `need`.

    current: the key of the session's current run; kept when it fits. Otherwise the fitting run
    most like it is taken; `prefer` ranks runs first when there is no current run to be like.
    """
    fitting = [r for r in runs if need.fits(r)]
    if not fitting:
        return None
    if any(r["key"] == current for r in fitting):
        return current
    like = next((r for r in runs if r["key"] == current), None)

    def rank(run: Run) -> tuple[bool, ...]:
        same_model = like is not None and run["model"]["name"] == like["model"]["name"]
        same_inputs = like is not None and run["dataset"]["fingerprint"] == like["dataset"]["fingerprint"]
        return (same_model and same_inputs, same_inputs, same_model,
                like is None and prefer is not None and prefer(run), not is_untrained(run))

    # max keeps the first of equal ranks: runs are listed newest first
    return max(fitting, key=rank)["key"]


def lens_model(runs: Sequence[Run], current: str | None, default: str) -> str:
    """The model the logit lens opens on: the current run's if it is a causal LM, else the causal LM of
    the run most like the current one, else `default` (a bundled causal LM)."""
    key = choose_run(runs, current, CAUSAL_LM)
    return next(r["model"]["name"] for r in runs if r["key"] == key) if key else default


def geometry_metrics(run: Run) -> list[str]:
    """The metrics Geometry opens with on `run`: curvature needs tokens, so pooled runs get dataset metrics."""
    return list(GEOMETRY_METRICS["tokens" if is_tokens(run) else "pooled"])
