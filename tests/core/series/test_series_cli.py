"""`python -m core series` and `ls --series`, run as a user would: subprocesses, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, workspace):
    return subprocess.run([sys.executable, "-m", "core", *args, "--workspace", str(workspace)],
                          check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow  # three subprocesses, each loading three checkpoints
def test_cli_series__extracts_prints_and_lists(gpt2_checkpoints, few_sentence_file, tmp_path):
    args = ("series", "--model", str(gpt2_checkpoints), "--data", str(few_sentence_file), "--layers",
            "transformer.h.0,transformer.h.1", "--name", "tiny gpt2")
    done = run_cli(*args, "--json", workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [c["label"] for c in summary["checkpoints"]] == ["checkpoint-50", "checkpoint-900", "checkpoint-1000"]
    assert [c["step"] for c in summary["checkpoints"]] == [50.0, 900.0, 1000.0]
    assert summary["name"] == "tiny gpt2" and summary["layers"] == ["transformer.h.0", "transformer.h.1"]
    assert "checkpoint 3 of 3: checkpoint-1000" in done.stderr
    plain = run_cli(*args, workspace=tmp_path / "ws")  # stored: printed again, same key
    assert plain.returncode == 0 and plain.stdout.startswith(f"series {summary['key']}  tiny gpt2: 3 checkpoints")
    assert all(c["run"] in plain.stdout for c in summary["checkpoints"])
    listed = run_cli("ls", "--series", "--json", workspace=tmp_path / "ws")
    assert [s["key"] for s in json.loads(listed.stdout)] == [summary["key"]]


@pytest.mark.parametrize("args, message", [
    (("--model", "{empty}"), "holds no checkpoint folders"),
    (("--model", "layerscope-tests/no-such-model", "--revisions", "step1,step2"), "revision 'step1' of"),
])
def test_cli_series__bad_input__one_line_and_exit_2(args, message, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty") for a in args]
    done = run_cli("series", *args, "--data", "demo:sentences", workspace=tmp_path / "ws")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr and done.stderr.count("\n") == 1


def test_cli_ls_series__empty_workspace__says_how_to_make_one(tmp_path):
    done = run_cli("ls", "--series", workspace=tmp_path / "ws")
    assert done.returncode == 0 and "python -m core series --model digits-mlp:series" in done.stdout
