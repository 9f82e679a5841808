"""Which runs Compare can set beside model A, which pair it opens on, and why the other runs are left out.

Two runs are comparable when they saw the same inputs in the same order (dataset fingerprint
and input count) and their rows mean the same thing: pooled runs with the same pooling, or
two per-token runs with the same tokenisation (compared token by token). A per-token run
is compared with a pooled one only when the user pools it explicitly (each input's mean
token vector), and then only with mean-pooled runs. Everything here but `token_signature`
works on run metadata alone (as `Store.list_runs` gives it), so it is tested without models.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.runs import find_twin, is_untrained

Run = Mapping[str, Any]  # a run's metadata, as Store.list_runs gives it

INPUT_ROWS = "inputs"  # one row per input (a per-token run: the mean of the input's tokens)
TOKEN_ROWS = "tokens"  # one row per token: both runs per-token with the same tokenisation
POOLING_WORDS = {"tokens": "per-token", "mean": "mean", "first": "first-token", "last": "last-token", "max": "max"}
DIFFERENT_INPUTS = "different inputs"
OTHER_TOKENISATION = "per-token, another tokenisation"


def token_signature(acts: Any) -> str:
    """A hash of a per-token run's token ids and input boundaries: equal for runs tokenised alike."""
    digest = hashlib.sha256()
    for array in (acts.offsets, acts.token_ids):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:20]


def _pooling(run: Run, pool_tokens: bool) -> str:
    """The run's pooling as Compare uses it: a per-token run pooled explicitly counts as mean-pooled."""
    return "mean" if pool_tokens and run["pooling"] == "tokens" else run["pooling"]


def _word(pooling: str) -> str:
    return POOLING_WORDS.get(pooling, pooling)


def why_not_comparable(run: Run, other: Run, *, pool_tokens: bool = False,
                       tokenisations: Mapping[str, str] | None = None) -> str | None:
    """Why `other` cannot be set beside `run` (a short reason naming other's side first), or None if it can.

    pool_tokens: per-token runs count as mean-pooled (each input's mean token vector).
    tokenisations: run key -> `token_signature`, for per-token runs (a run missing here is
    taken to be tokenised differently).
    """
    if (other["dataset"]["fingerprint"] != run["dataset"]["fingerprint"]
            or other["n_inputs"] != run["n_inputs"]):
        return DIFFERENT_INPUTS
    mine, theirs = _pooling(run, pool_tokens), _pooling(other, pool_tokens)
    if mine == theirs == "tokens":
        signatures = tokenisations or {}
        same = signatures.get(run["key"]) is not None and signatures.get(run["key"]) == signatures.get(other["key"])
        return None if same else OTHER_TOKENISATION
    if mine != theirs:
        return f"{_word(theirs)} vs {_word(mine)}"
    return None


def rows_of(run: Run, other: Run, *, pool_tokens: bool = False) -> str:
    """What a row of the compared matrices is for two comparable runs: TOKEN_ROWS or INPUT_ROWS."""
    both_tokens = _pooling(run, pool_tokens) == _pooling(other, pool_tokens) == "tokens"
    return TOKEN_ROWS if both_tokens else INPUT_ROWS


def _rank(run: Run, partner: Run, twin: Run | None) -> int:
    """Default order of partners: another trained model, A's untrained twin, other untrained runs, A's model."""
    if twin is not None and partner["key"] == twin["key"]:
        return 1
    if is_untrained(partner):
        return 2
    if partner["model"].get("weights") == run["model"].get("weights"):
        return 3  # the same weights again (other layers, length or name): no second model
    return 0


@dataclass(frozen=True)
class Pairing:
    """Model A's comparable partners, best default first, and the runs left out with their reasons."""

    run: Run  # model A
    partners: tuple[Run, ...]  # comparable runs, model A itself never among them
    left_out: Mapping[str, int] = field(default_factory=dict)  # reason -> number of runs
    twin: Run | None = None  # model A's stored untrained twin (comparable or not), None when absent
    pool_tokens: bool = False

    @property
    def default(self) -> str | None:
        """Key of model B by default: the first partner; None when nothing is comparable (never A itself)."""
        return self.partners[0]["key"] if self.partners else None

    @property
    def n_left_out(self) -> int:
        return sum(self.left_out.values())

    def summary(self) -> str:
        """The runs left out and why, e.g. "3 runs left out: different inputs (2), per-token vs mean (1)"."""
        if not self.left_out:
            return ""
        n = self.n_left_out
        reasons = ", ".join(f"{why} ({count})" for why, count in self.left_out.items())
        return f"{n} run{'s' if n != 1 else ''} left out: {reasons}"

    def rows(self, partner: Run) -> str:
        """What a row is when `partner` is model B (model A itself: as its own pooling says)."""
        return rows_of(self.run, partner, pool_tokens=self.pool_tokens)


def pair_runs(run: Run, runs: Sequence[Run], *, pool_tokens: bool = False,
              tokenisations: Mapping[str, str] | None = None) -> Pairing:
    """Model A's comparable partners among `runs` (best default first) and why the others are left out.

    Reasons are counted most frequent first; model A itself is neither a partner nor left out.
    """
    twin = None if is_untrained(run) else find_twin(run, runs)
    partners: list[Run] = []
    reasons: Counter[str] = Counter()
    for other in runs:
        if other["key"] == run["key"]:
            continue
        why = why_not_comparable(run, other, pool_tokens=pool_tokens, tokenisations=tokenisations)
        if why is None:
            partners.append(other)
        else:
            reasons[why] += 1
    partners.sort(key=lambda p: _rank(run, p, twin))  # stable: the listing's order (newest first) within a rank
    return Pairing(run, tuple(partners), dict(reasons.most_common()), twin, pool_tokens)


def pair_to_open(runs: Sequence[Run], current: str | None, *, demo: str | None = None, pool_tokens: bool = False,
                 tokenisations: Mapping[str, str] | None = None) -> str | None:
    """Key of the model A Compare opens on.

    current: the session's current run (chosen on another page), kept when it has a partner.
    Otherwise the run with a partner most like it (same model and inputs, then same inputs, then
    same model); with no current run, `demo` if it has a partner of another trained model, else
    the first trained run that has one. None only for an empty workspace; `current` (or the
    first run) when no run has a partner.
    """
    pairings = {r["key"]: pair_runs(r, runs, pool_tokens=pool_tokens, tokenisations=tokenisations) for r in runs}
    if current in pairings and pairings[current].partners:
        return current
    with_partner = [p for p in pairings.values() if p.partners]
    if not with_partner:
        return current if current in pairings else (runs[0]["key"] if runs else None)
    like = pairings[current].run if current in pairings else None

    def two_models(p: Pairing) -> bool:
        return not is_untrained(p.run) and _rank(p.run, p.partners[0], p.twin) == 0

    def rank(p: Pairing) -> tuple[bool, ...]:
        same_model = like is not None and p.run["model"]["name"] == like["model"]["name"]
        same_inputs = like is not None and p.run["dataset"]["fingerprint"] == like["dataset"]["fingerprint"]
        return (same_model and same_inputs, same_inputs, same_model, like is None and p.run["key"] == demo,
                two_models(p), not is_untrained(p.run))

    return max(with_partner, key=rank).run["key"]  # max keeps the first of equal ranks: the newest run
