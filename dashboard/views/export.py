"""Export: every figure of the chosen run(s) as a report folder + zip (the same code as `python -m core report`)."""

from pathlib import Path

import streamlit as st

from core import export
from core.report import write_report
from dashboard import cached, state, widgets
from dashboard.figure_export import images_unavailable

widgets.page_header(
    "Export",
    "One click writes every figure of the chosen runs (maps, probes, geometry, trajectories, comparisons) as "
    "PNG, SVG and interactive HTML, with their data as CSV and Parquet, a JSON sidecar per figure and an "
    "index.html, into a folder of the workspace and a zip of it.",
)

runs = widgets.workspace_runs()
by_key = {r["key"]: r for r in runs}
current = state.run_key()
chosen = st.multiselect(
    "Runs", list(by_key), default=[current if current in by_key else runs[0]["key"]],
    format_func=lambda k: widgets.describe_run(by_key[k]),
    help="Two runs on the same inputs also get the CKA heatmap and probe curves on a relative-depth axis.",
)
c1, c2 = st.columns([2, 1])
folder = c1.text_input("Folder", value="report",
                       help="Inside the workspace's exports/ folder; a zip is written beside it.")
publication = c2.checkbox("Publication style", value=True,
                          help="White background, larger fonts, colour-blind-safe colours, no toolbar.")
root = export.EXPORTS_DIR
st.caption(f"Writes `{cached.store().root / root}/{folder.strip() or '…'}/` and `{folder.strip() or '…'}.zip`. "
           "An earlier report in that folder is replaced once the new one is complete.")
reason = images_unavailable()
if reason:
    st.warning(reason, icon=":material/image_not_supported:")

if st.button("Export report", type="primary", icon=":material/ios_share:", disabled=not chosen):
    with widgets.user_errors():
        target = export.safe_child(export.exports_root(cached.store()), folder)
        bar = widgets.ProgressBar("Planning the report...")
        result = write_report(cached.store(), chosen, target, publication=publication, load_model=cached.load_model,
                              progress=bar)
        bar.empty()
        st.session_state[state.Export.REPORT] = {
            "path": str(result.path), "zip": str(result.zip_path), "figures": len(result.figures),
            "not_drawn": result.not_drawn, "notes": result.notes, "seconds": result.seconds,
        }

report = st.session_state.get(state.Export.REPORT)
if report and Path(report["zip"]).is_file():
    st.success(f"Wrote {report['figures']} figures in {report['seconds']:.1f} s to `{report['path']}`.",
               icon=":material/check_circle:")
    for note in report["notes"]:
        st.caption(note)
    zip_path = Path(report["zip"])
    st.download_button(f"Download {zip_path.name} ({zip_path.stat().st_size / 2**20:.1f} MB)",
                       data=lambda: zip_path.read_bytes(), file_name=zip_path.name, mime=export.MIME["zip"],
                       icon=":material/download:", on_click="ignore", key=state.Export.ZIP)
    if report["not_drawn"]:
        with st.expander(f"Not drawn ({len(report['not_drawn'])})"):
            for item in report["not_drawn"]:
                st.markdown(f"- **{item['title']}**: {item['reason']}")
st.caption("From a shell, the same report: `python -m core report --run KEY --out report/`; regenerate one figure "
           "from its sidecar with `python -m core figure --from report/figures/NAME.json`.")
