"""Linear probes per layer: how well a label can be read out of each layer (METRICS.md).

Classification: multinomial logistic regression with an L2 penalty, in scikit-learn's
convention, with `StratifiedKFold(n_folds, shuffle=True, random_state=seed)` folds
(`logistic`). Regression: ridge with alpha by exact leave-one-out, held-out R^2,
`KFold(n_folds, shuffle=True, random_state=seed)` folds (`ridge`). Controls (Hewitt &
Liang 2019; `controls`): the same probe on shuffled labels, or on Hewitt & Liang's
control task (one random label per word type) for inputs that are single words;
selectivity = score - control score. Each input's out-of-fold prediction is kept, so
`probe_interval` gives a bootstrap interval over inputs per layer and a paired test of
best layer vs last layer without refitting (`bootstrap`).

All folds, both tasks and every layer of one width are fitted as one batched problem
in torch (on the GPU when there is one); the logistic fits run the batched L-BFGS of
`lbfgs`. `probe_by_layer_cached` picks the task from the label column and caches
the result in the store (`cached`).
"""

from core.analysis.probes.bootstrap import DEFAULT_LEVEL, DEFAULT_N_BOOT, ProbeInterval, interval_name, probe_interval
from core.analysis.probes.cached import TASKS, probe_by_layer_cached
from core.analysis.probes.controls import CONTROL_NAMES, CONTROLS, run_word_types
from core.analysis.probes.labels import AUTO_MAX_CLASSES, MAX_CLASSES, infer_task
from core.analysis.probes.logistic import probe_accuracy_by_layer
from core.analysis.probes.result import PROBE_VERSION, ProbeResult
from core.analysis.probes.ridge import DEFAULT_ALPHAS, probe_r2_by_layer

__all__ = [
    "AUTO_MAX_CLASSES",
    "CONTROLS",
    "CONTROL_NAMES",
    "DEFAULT_ALPHAS",
    "DEFAULT_LEVEL",
    "DEFAULT_N_BOOT",
    "MAX_CLASSES",
    "PROBE_VERSION",
    "TASKS",
    "ProbeInterval",
    "ProbeResult",
    "infer_task",
    "interval_name",
    "probe_accuracy_by_layer",
    "probe_by_layer_cached",
    "probe_interval",
    "probe_r2_by_layer",
    "run_word_types",
]
