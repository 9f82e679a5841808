"""Layerscope dashboard entry point: `streamlit run dashboard/app.py`.

Only navigation lives here; each page is a thin file in views/.
"""

from pathlib import Path

import streamlit as st

from dashboard import jobs, widgets

ASSETS = Path(__file__).resolve().parents[1] / "assets"

st.set_page_config(page_title="Layerscope", page_icon=str(ASSETS / "icon.svg"), layout="wide",
                   initial_sidebar_state=widgets.SIDEBAR_WIDTH)
st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"))
widgets.inject_css()
jobs.start_umap_warmup()

VIEWS = Path(__file__).resolve().parent / "views"
pages = {
    "Start": [
        st.Page(VIEWS / "home.py", title="Home", icon=":material/home:", default=True),
        st.Page(VIEWS / "workspace.py", title="Workspace", icon=":material/database:"),
        st.Page(VIEWS / "export.py", title="Export", icon=":material/ios_share:"),
    ],
    "Layers": [
        st.Page(VIEWS / "explorer.py", title="Layer explorer", icon=":material/scatter_plot:"),
        st.Page(VIEWS / "probes.py", title="Probes", icon=":material/show_chart:"),
        st.Page(VIEWS / "interventions.py", title="Interventions", icon=":material/tune:"),
    ],
    "Models": [
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(VIEWS / "dynamics.py", title="Training dynamics", icon=":material/timelapse:"),
    ],
    "Sparse autoencoders": [
        st.Page(VIEWS / "sae_train.py", title="Train SAE", icon=":material/model_training:"),
        st.Page(VIEWS / "sae_gallery.py", title="Feature gallery", icon=":material/grid_view:"),
        st.Page(VIEWS / "sae_match.py", title="Feature matching", icon=":material/join_inner:"),
    ],
    "Geometry": [
        st.Page(VIEWS / "geometry.py", title="Geometry", icon=":material/insights:"),
        st.Page(VIEWS / "trajectory.py", title="Trajectory", icon=":material/timeline:"),
        st.Page(VIEWS / "lens.py", title="Logit lens", icon=":material/manage_search:"),
    ],
}
st.navigation(pages).run()
