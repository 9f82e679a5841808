"""Control tasks of a probe: the labels selectivity is measured against (Hewitt & Liang 2019).

"shuffled": the labels permuted across inputs with `numpy.random.default_rng(seed)`;
    what the label says about each input is destroyed, its distribution kept exactly.
"task": Hewitt & Liang's control task (john-hewitt/control-tasks, task.py,
    `CorruptedPartOfSpeechLabelTask._register_type`): each word type gets one label
    drawn from the empirical label distribution, the same at every occurrence of the
    type. Here the type is the input's text, stripped, exactly as written; with the types
    sorted, type i gets sort(labels)[j_i], j = default_rng(seed).integers(0, n, n_types),
    so a type's label does not depend on the order of the rows. A probe that scores well
    on it memorises word identity, which is what selectivity should discount on word
    datasets: shuffled labels give repeated words (identical inputs) different labels, a
    control no probe can fit, and overstate selectivity there.
"auto": "task" when every input is a single word (its text has no whitespace),
    "shuffled" otherwise. "none": no control (the control scores are NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import LayerscopeError
from core.validation import check_choice

if TYPE_CHECKING:
    from core.activations import Activations

CONTROLS = ("auto", "shuffled", "task", "none")

# how each control's labels are drawn, recorded in the result's params
CONTROL_LABELS = {
    "shuffled": "numpy.random.default_rng(seed).permutation(labels)",
    "task": "one label per word type (input text, stripped; types sorted): "
    "sort(labels)[numpy.random.default_rng(seed).integers(0, n, n_types)][type of each input]",
    "none": "no control",
}

# how each control is named in legends, captions and export sidecars
CONTROL_NAMES = {
    "shuffled": "shuffled-label control",
    "task": "control task (one random label per word type, Hewitt & Liang 2019)",
    "none": "no control",
}


def check_control(control: Any) -> str:
    """`control` as one of CONTROLS; True and False (the earlier switch) mean "shuffled" and "none"."""
    if control is True:
        return "shuffled"
    if control is False:
        return "none"
    return check_choice("control", control, CONTROLS)


def stored_control(params: dict[str, Any]) -> str:
    """The control a stored result used ("shuffled" for results that recorded control=True)."""
    value = params.get("control", True)
    if isinstance(value, bool):
        return "shuffled" if value else "none"
    return value if value in CONTROL_NAMES else "shuffled"


def word_types(texts: Sequence[Any]) -> np.ndarray:
    """(n,) the word type of each input: its text, stripped, as a string."""
    return np.array([str(text).strip() for text in texts], dtype=object)


def task_control_refusal(types: np.ndarray) -> str | None:
    """Why the control task does not apply to these word types, or None when every one is a single word."""
    if len(types) == 0:
        return "there are no inputs"
    not_words = [t for t in types if not t or any(c.isspace() for c in t)]
    if not not_words:
        return None
    return (
        f"{len(not_words)} of {len(types)} inputs are not single words (e.g. {not_words[0]!r}); "
        "the control task gives each word type one label, so every input must be one word"
    )


def run_word_types(acts: Activations) -> tuple[np.ndarray | None, str | None]:
    """(word types (n,), None) of a run whose inputs are single words, else (None, why not).

    A tokens run is probed on the mean of each input's tokens, so its word types are
    still the input texts.
    """
    if acts.modality != "text":
        return None, f"the inputs of this run are {acts.modality}s, not words"
    types = word_types(acts.texts)
    refusal = task_control_refusal(types)
    return (None, refusal) if refusal else (types, None)


def resolve_control(control: Any, types: np.ndarray | None) -> str:
    """The control to fit: "auto" becomes "task" for single-word inputs, else "shuffled"."""
    control = check_control(control)
    refusal = "the word type of each input is unknown: pass types= (one word per input)" if types is None else (
        task_control_refusal(types)
    )
    if control == "auto":
        return "shuffled" if refusal else "task"
    if control == "task" and refusal:
        raise LayerscopeError(f"control='task' cannot be used: {refusal}; use control='shuffled'")
    return control


def control_values(values: np.ndarray, control: str, seed: int, types: np.ndarray | None) -> np.ndarray | None:
    """(n,) control labels (or targets) for `values` (n,), or None for control="none".

    control is "shuffled", "task" or "none" (resolved); types (n,) the word type of each input.
    """
    rng = np.random.default_rng(seed)
    if control == "shuffled":
        return rng.permutation(values)
    if control == "task":
        assert types is not None and len(types) == len(values)
        distinct, type_of = np.unique(types.astype(str), return_inverse=True)
        drawn = rng.integers(0, len(values), size=len(distinct))  # one draw per type from the empirical labels
        return np.sort(values)[drawn][type_of]  # sorted: the draws do not depend on the order of the rows
    return None


def input_types(layers: Any, types: Sequence[Any] | None, n: int) -> np.ndarray | None:
    """(n,) word types: `types` when given, else the texts of an Activations run of text, else None."""
    from core.activations import Activations

    if types is not None:
        found = word_types(np.asarray(types, dtype=object).reshape(-1))
        if len(found) != n:
            raise LayerscopeError(f"types has {len(found)} values but there are {n} labels; give one word per input")
        return found
    if isinstance(layers, Activations) and layers.modality == "text":
        return word_types(layers.texts)
    return None
