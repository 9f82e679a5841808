"""Reports complete on runs of the bundled encoder, causal LM and MLP, drawing every planned figure.

In process on the recipe tests' small runs, and as `python -m core report` in a fresh
workspace (extraction included; the text models' runs are slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from recipe_workspaces import share_models

from core.report import plan_report, write_report
from core.store import Store


@pytest.mark.parametrize("kind", ["minilm_runs", "digits_runs"])
def test_write_report__every_planned_figure_of_a_run_and_its_partner_is_drawn(request, tmp_path, kind):
    runs = request.getfixturevalue(kind)
    keys = [key for key in (runs.main, runs.partner, runs.tokens) if key]
    result = write_report(runs.store, keys, tmp_path / "r", formats=(), tables=("csv",), make_zip=False)
    assert not result.not_drawn and len(result.figures) == len(plan_report(runs.store, keys))
    drawn = {sidecar["spec"]["figure"] for sidecar in result.figures}
    assert {"layer_map", "probe_curve", "geometry_curves", "similarity_heatmap", "probe_depth_curves"} <= drawn


@pytest.mark.parametrize(
    ("model", "data", "limit", "poolings", "kinds"),
    [
        pytest.param("digits-mlp", "demo:digits", "150", "mean", {"probe_curve", "geometry_curves"}, id="digits-mlp"),
        pytest.param("minilm", "demo:sentences", "40", "mean,tokens", {"probe_curve", "trajectory"}, id="minilm",
                     marks=pytest.mark.slow),
        pytest.param("smollm2", "demo:sentences", "30", "mean,tokens", {"trajectory", "lens_heatmap", "kl_curve"},
                     id="smollm2", marks=pytest.mark.slow),
    ],
)
def test_cli_report__completes_with_every_figure_drawn(request, tmp_path, session_store, model, data, limit, poolings,
                                                       kinds):
    if model == "digits-mlp":
        request.getfixturevalue("digits_runs")  # trains digits-mlp into the session's models once
    workspace = Store(tmp_path / "ws")
    share_models(workspace, session_store)  # smollm2 converted, digits-mlp trained once per session
    done = subprocess.run(
        [sys.executable, "-m", "core", "report", "--model", model, "--data", data, "--limit", limit, "--pooling",
         poolings, "--formats", "csv", "--no-zip", "--out", str(tmp_path / "r"), "--workspace", str(workspace.root)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "not drawn" not in done.stderr, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "r" / "report.json").read_text())
    drawn = {figure["figure"] for figure in manifest["figures"]}
    assert {"layer_map", "animated_layer_map"} | kinds <= drawn and not manifest["not_drawn"]
    assert all((tmp_path / "r" / figure["files"]["csv"]).is_file() for figure in manifest["figures"])
