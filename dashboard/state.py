"""Session state: the values pages share, as typed accessors, and the name of every key.

Three values cross pages: the current run (every page's sidebar), the layer the explorer
shows (the probes page opens a layer there) and the current SAE (the train page hands it
to the gallery). Everything else belongs to one page; its key names are listed here, one
class per page, so that no two pages collide and tests can address a widget by its key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

RUN = "run_key"  # key of the run the pages show
EXPLORER_LAYER = "explorer_layer"  # layer the explorer shows
SAE = "sae_key"  # key of the SAE the gallery shows


def _get_str(name: str) -> str | None:
    value = st.session_state.get(name)
    return value if isinstance(value, str) else None


def run_key() -> str | None:
    """Key of the current run, if one was chosen in this session."""
    return _get_str(RUN)


def set_run_key(key: str) -> None:
    """Make run `key` the current run of every page."""
    st.session_state[RUN] = key


def explorer_layer() -> str | None:
    """The layer the explorer shows, if one was chosen in this session."""
    return _get_str(EXPLORER_LAYER)


def set_explorer_layer(layer: str) -> None:
    """Show `layer` in the explorer."""
    st.session_state[EXPLORER_LAYER] = layer


def sae_key() -> str | None:
    """Key of the current SAE, if one was chosen in this session."""
    return _get_str(SAE)


def set_sae_key(key: str) -> None:
    """Make SAE `key` the one the gallery shows."""
    st.session_state[SAE] = key


def computed(name: str) -> set[Any]:
    """The requests a page has computed in this session (kept so that a rerun shows them without a click)."""
    return st.session_state.setdefault(name, set())


# ----- page-local keys ---------------------------------------------------------------------------------
def _per_item(prefix: str) -> Callable[[Any], str]:
    """Keys of a widget a page draws once per item (a label column, a side, a metric): "<prefix>_<item>"."""
    return staticmethod(lambda item: f"{prefix}_{item}")


class Workspace:
    RUNS_TABLE = "runs_table"
    RUN_NAME = "workspace_run_name"  # str: the name given to the next extraction
    RENAME_FORM = "workspace_rename"
    rename = _per_item("workspace_rename")  # a stored run's name field, per run key


class Explorer:
    SELECTED = "explorer_selected"  # int: the input clicked on the map
    REGION = "explorer_region"  # {"run": run key, "rows": [int]}: the inputs a box or lasso picked on the map
    MAP = "explorer_map"
    ANIMATION = "explorer_animation"


class Probes:
    COMPUTED = "probes_requested"  # set of (run key, label columns, control) probed in this session
    CONTROL = "probes_control"  # the control picked in the sidebar ("task" or "shuffled")
    stopped = _per_item("probes_stopped")  # a label column's probe request (run key, column, control) cancelled
    chart = _per_item("probe")  # a label column's probe curve
    layer = _per_item("open")  # its layer picker
    open_layer = _per_item("go")  # its "Open in explorer" button


class Compare:
    FIT_COLOURS = "compare_fit_colours"
    PARTNER_SOURCE = "partner_source"
    PARTNER_BUNDLED = "partner_bundled"
    PARTNER_TYPED = "partner_typed"
    PARTNER_EXTRACT = "partner_extract"
    HEATMAP = "compare_heatmap"  # the heatmap's selection event
    CELL = "compare_cell"  # (layer of A, layer of B) clicked on the heatmap
    SELECTION = "compare_selection"  # list of input rows selected on either map
    PROBE_CURVES = "compare_probe_curves"
    SHOWN_A = "compare_shown_a"  # key of the run the page last showed as model A
    MODEL_B = "compare_model_b"  # key of the run picked as model B
    MODEL_B_NEXT = "compare_model_b_next"  # key of a run just extracted, made model B on the next run
    POOL_TOKENS = "compare_pool_tokens"  # bool: per-token runs enter as each input's mean token vector
    STOPPED = "compare_stopped"  # the similarity request cancelled, and how far it got
    PROBES_STOPPED = "compare_probes_stopped"  # the probe-curve request cancelled
    PROBES_COMPUTED = "compare_probes_requested"  # set of (run keys, label column) probed in this session
    EXTRACT_STOPPED = "compare_extract_stopped"  # the extraction cancelled (its finished batches are kept)
    NULL = "compare_null"  # bool: calibrate the heatmap against a permutation null
    NULL_PERMUTATIONS = "compare_null_permutations"  # int: permutations of the null
    NULL_STOPPED = "compare_null_stopped"  # the null or bootstrap request cancelled
    NULL_COMPUTED = "compare_null_requested"  # set of null / bootstrap requests computed in this session
    map = _per_item("compare_map")  # the map of side "a" or "b"


class Geometry:
    COMPUTED = "geometry_requested"  # set of plan requests (runs x metric jobs) computed in this session
    BANDS = "geometry_bands"  # bool: bands over resampled inputs for intrinsic dimension, entropy, rank
    BANDS_STOPPED = "geometry_bands_stopped"  # the bands request cancelled, and how far it got
    chart = _per_item("geometry")  # a metric's curves


class Trajectory:
    COMPUTED = "trajectory_reference"  # set of (run key, variant) whose all-inputs curve was computed
    PATH = "trajectory_pca"
    CURVATURE = "trajectory_curvature"


class Dynamics:
    SERIES = "dynamics_series"  # key of the series the page shows (also its picker's key)
    METRIC = "dynamics_metric"  # the per-layer metric of the heatmap and curves
    COLUMN = "dynamics_column"  # the label column probe accuracy decodes
    SIMILARITY = "dynamics_similarity"  # the similarity measure against the final checkpoint
    LAYER = "dynamics_layer"  # the layer the animated map shows
    COLOUR = "dynamics_colour"  # the label column colouring the map
    COMPUTED = "dynamics_requested"  # set of (part, series key, parameters) computed in this session
    BUILD_STOPPED = "dynamics_build_stopped"  # the bundled series' training and extraction cancelled
    CURVES_OVER = "dynamics_curves_over"  # curves: one per layer over training ("step") or per checkpoint ("layer")
    X_AXIS = "dynamics_x_axis"  # training axis: the step's value or one even space per checkpoint
    HEATMAP = "dynamics_heatmap"
    CURVES = "dynamics_curves"
    SIMILARITY_CHART = "dynamics_similarity_chart"
    MAP = "dynamics_map"
    stopped = _per_item("dynamics_stopped")  # a part's computation ("metric", "similarity", "map") cancelled
    compute = _per_item("dynamics_compute")  # a part's Compute button


class Lens:
    TEXT = "lens_text"  # the text box
    EXAMPLE = "lens_example"  # an input picked from the current run
    REQUEST = "lens_request"  # (model, text, top_k) last asked for
    HEATMAP = "lens_heatmap"
    KL = "lens_kl"


class Export:
    REPORT = "export_report"  # {"path", "zip", "figures", "not_drawn", "notes", "seconds"} of the last report
    ZIP = "export_report_zip"


class SaeTrain:
    DETAILS = "sae_train_details"  # the SAE whose details are shown (also the select box's key)
    LAYER = "sae_layer"
    FORM = "sae_config"
    ARCHITECTURE = "sae_architecture"
    EXPANSION = "sae_expansion"
    TOP_K = "sae_k"
    L1 = "sae_l1"
    LR = "sae_lr"
    BATCH = "sae_batch"
    TOKENS = "sae_tokens"
    SEED = "sae_seed"
    NORMALIZE = "sae_normalize"
    EXCLUDE_FIRST = "sae_exclude_first"
    REVIVE = "sae_revive"
    HELD_OUT = "sae_held_out"
    DEAD_WINDOW = "sae_dead_window"
    STOP = "sae_stop"
    IMPORT_FOLDER = "sae_import_folder"
    IMPORT_EXCLUDE_FIRST = "sae_import_exclude_first"
    IMPORT = "sae_import"
    HISTORY = "sae_train_history"


class Gallery:
    OPEN = "gallery_open"  # the latent whose full card is shown (also the number box's key)
    OPEN_FOR = "gallery_open_sae"  # the SAE that OPEN refers to
    SAE = "gallery_sae"
    SORT = "gallery_sort"
    LABEL = "gallery_label"
    SEARCH = "gallery_search"
    HIDE_DEAD = "gallery_hide_dead"
    PER_PAGE = "gallery_per_page"
    PAGE = "gallery_page"
    MAP = "gallery_map"
    DENSITY = "gallery_density"
    open_card = _per_item("open")  # a latent's "Open" button


class Matching:
    A = "match_a"
    B = "match_b"
    VARIANT = "match_variant"
    PAIR = "match_pair"
    HISTOGRAM = "match_histogram"


def feature_card_chart(kind: str, card: str) -> str:
    """Key of one chart on a feature card (`kind`: hist, logits or assoc_<column>)."""
    return f"{kind}_{card}"
