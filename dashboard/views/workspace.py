"""Workspace: choose a model and a dataset, extract, and reuse, name or rename stored runs."""

import time

import pandas as pd
import streamlit as st

import core
from core.data.demo import DEMOS
from core.data.naming import UPLOAD_LIMIT_MB, UPLOADS_DIR, display_name, save_upload
from core.models import BUNDLED
from core.store import RUN_NAME_MAX, check_run_name
from dashboard import actions, cached, series_choice, state, widgets

OTHER_MODEL = "Other: folder, hub id or package.module:factory"
POOLING_HELP = {
    "mean": "mean over real (non-padding) tokens",
    "first": "first token (CLS for BERT-style encoders and vision transformers)",
    "last": "last real token (the usual choice for causal LMs)",
    "max": "element-wise max over real tokens",
    "tokens": "every token's vector (needed for curvature and SAEs)",
}

NAME_HELP = ("Shown first in every run picker, e.g. 'baseline' or 'seed 1'; display only: it never changes the "
             "run's key, and the same request is still read from the store.")

widgets.page_header("Workspace", "Pick a model and a dataset, choose layers and pooling, and extract activations.")


def keep_upload(upload) -> str:
    """Keep an uploaded table in the workspace under its own file name (in a folder named by its content)."""
    return str(save_upload(cached.store().root / UPLOADS_DIR, upload.name, upload.getvalue()))


def choose_model() -> tuple[str, bool]:
    names = [*BUNDLED, OTHER_MODEL]
    choice = st.selectbox("Model", names, format_func=lambda n: n if n == OTHER_MODEL else f"{n}: {BUNDLED[n]}")
    name = choice
    if choice == OTHER_MODEL:
        name = st.text_input(
            "Model folder, hub id or factory",
            placeholder="/models/my-bert   or   org/name   or   mypkg.models:make_model",
        ).strip()
    untrained = st.checkbox(
        "Untrained twin (same architecture, re-initialised weights)",
        help="The classic control: what does the architecture alone give?",
    )
    return name, untrained


def choose_dataset() -> str | None:
    source = st.radio("Dataset source", ["Bundled", "File or folder path", "Upload"], horizontal=True)
    if source == "Bundled":
        return st.selectbox("Dataset", list(DEMOS), format_func=lambda n: f"{n}: {DEMOS[n]}")
    if source == "File or folder path":
        path = st.text_input("Path", placeholder="/data/sentences.csv or /data/images/").strip()
        return path or None
    upload = st.file_uploader(
        f"CSV, JSONL or Parquet (up to {UPLOAD_LIMIT_MB} MB)", type=["csv", "jsonl", "parquet"]
    )
    if upload is None:
        return None
    if upload.size > UPLOAD_LIMIT_MB * 2**20:
        widgets.show_error(f"{upload.name} is {upload.size / 2**20:.0f} MB; the upload limit is {UPLOAD_LIMIT_MB} MB",
                           hint="Give its path instead.")
        return None
    return keep_upload(upload)


def run_extraction(model, dataset, layers, pooling, batch_size, name: str | None) -> None:
    start = time.time()

    def describe(done: int, total: int, what: str) -> str:
        elapsed = time.time() - start
        left = elapsed / max(done, 1) * (total - done)
        return f"Batch {done} / {total} · {elapsed:.0f} s elapsed · about {left:.0f} s left"

    bar = widgets.ProgressBar("Starting...", describe=describe)
    acts = actions.extract(model, dataset, layers=layers, pooling=pooling, batch_size=batch_size, progress=bar)
    bar.finish(f"Done in {time.time() - start:.1f} s")
    meta = {**acts.meta, "key": acts.key}
    if name:
        meta = {**cached.store().rename_run(acts.key, name), "key": acts.key}
        cached.list_runs.clear()
    st.success(f"Stored run {widgets.describe_run(meta)} ({len(acts.layer_names)} layers).")
    if acts.dataset_name != dataset.display_name:
        st.info(f"{dataset.display_name} holds the same inputs as {acts.dataset_name}, extracted before with the "
                "same settings: that run is reused. Name it to tell it apart.", icon=":material/info:")
    st.page_link("views/explorer.py", label="Open it in the layer explorer", icon=":material/scatter_plot:")


new_run, stored_runs = st.tabs(["New extraction", "Stored runs"])

with new_run:
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("##### Model")
        model_name, untrained = choose_model()
    with right:
        st.markdown("##### Dataset")
        spec = choose_dataset()

    model = dataset = None
    with widgets.user_errors():
        if model_name:
            model = cached.load_model(model_name, reinit=untrained)
        if spec:
            dataset = cached.dataset(spec)
    if model is None or dataset is None:
        widgets.empty_state("Choose a model and a dataset to set up an extraction.")
    else:
        st.markdown("##### Inputs and labels")
        columns = list(dataset.table.columns)
        c1, c2 = st.columns([1, 2])
        text_column = c1.selectbox(
            "Text column", columns, index=columns.index(dataset.text_column) if dataset.text_column in columns else 0,
            help="The column holding the inputs. Default: the column named 'text', else the first column of text.",
        )
        label_columns = c2.multiselect(
            "Label columns", [c for c in columns if c != text_column],
            default=[c for c in dataset.label_columns if c != text_column],
        )
        if dataset.modality == "text" and "text" not in columns and text_column == dataset.text_column:
            st.warning(f"{dataset.display_name} has no column named 'text', so its first column of text, "
                       f"{text_column!r}, is taken as the inputs. Check that it holds them, or pick the text column.",
                       icon=":material/warning:")
        st.dataframe(dataset.table.head(8), hide_index=True, width="stretch")
        st.caption(f"{len(dataset)} rows · {dataset.modality} · {dataset.description}")

        st.markdown("##### Layers and pooling")
        defaults = model.default_layers()
        c1, c2, c3 = st.columns([3, 1, 1])
        layers = c1.multiselect("Layers", model.layer_names(), default=defaults,
                                help="Default: the embeddings and every block's output (the residual stream).")
        poolings = model.poolings
        pooling = c2.selectbox("Pooling", poolings, help="; ".join(f"{p}: {POOLING_HELP[p]}" for p in poolings))
        batch_size = int(c3.number_input("Batch size", min_value=1, max_value=1024, value=32))
        st.caption(f"{model.name}: {model.description} · device {model.device}")
        run_name = st.text_input("Run name (optional)", max_chars=RUN_NAME_MAX, key=state.Workspace.RUN_NAME,
                                 placeholder="e.g. baseline", help=NAME_HELP)
        if st.button("Extract activations", type="primary", disabled=not layers):
            with widgets.user_errors():
                name = check_run_name(run_name)  # refused before a long extraction, not after it
                chosen = core.load_dataset(spec, text_column=text_column, label_columns=label_columns)
                run_extraction(model, chosen, layers, pooling, batch_size, name)

with stored_runs:
    runs = cached.list_runs()
    if not runs:
        widgets.empty_state("No runs yet. Extract one in the first tab; it is stored and reused from then on.")
    else:
        table = pd.DataFrame(
            {
                "name": [r.get("name") or "" for r in runs],
                "model": [r["model"]["name"] for r in runs],
                "dataset": [display_name(r["dataset"]["name"]) for r in runs],
                "pooling": [r["pooling"] for r in runs],
                "inputs": [r["n_inputs"] for r in runs],
                "layers": [len(r["layers"]) for r in runs],
                "size (MB)": [round(r["bytes"] / 2**20, 1) for r in runs],
                "created": [r["created"].replace("T", " ") for r in runs],
                "key": [r["key"] for r in runs],
            }
        )
        picked = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun",
                              selection_mode="single-row", key=state.Workspace.RUNS_TABLE)
        rows = picked.selection.rows if picked else []
        if rows:
            run = runs[rows[0]]
            state.set_run_key(run["key"])
            st.success(f"Selected {widgets.run_details(run)}.")
            with st.form(state.Workspace.RENAME_FORM, border=False):
                c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
                new_name = c1.text_input("Run name", value=run.get("name") or "", max_chars=RUN_NAME_MAX,
                                         key=state.Workspace.rename(run["key"]), placeholder="e.g. baseline",
                                         help=NAME_HELP + " Leave it empty to remove the name.")
                if c2.form_submit_button("Save name", icon=":material/edit:"):
                    with widgets.user_errors():
                        cached.store().rename_run(run["key"], new_name)
                        cached.list_runs.clear()
                        st.rerun()
            c1, c2 = st.columns(2)
            c1.page_link("views/explorer.py", label="Open in the layer explorer", icon=":material/scatter_plot:")
            c2.page_link("views/probes.py", label="Probe its labels", icon=":material/show_chart:")
        else:
            st.caption("Select a row to make it the current run for the other pages, or to name it.")

with stored_runs:
    if series := cached.list_series():  # checkpoint series link stored runs, one per checkpoint
        st.markdown("##### Checkpoint series")
        st.dataframe(series_choice.series_table(series), hide_index=True, width="stretch")
        st.page_link("views/dynamics.py", label="Open in Training dynamics", icon=":material/timelapse:")
