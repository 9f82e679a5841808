"""Folders of tiny GPT-2 checkpoints (random weights, the bundled minilm tokenizer), built offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/core: family_builders

from family_builders import SPECIAL_IDS, VOCAB, save_model


def save_gpt2(folder: Path, *, seed: int, width: int = 32) -> Path:
    """A 2-block GPT-2 `width` wide with weights drawn from `seed`, saved as a Hugging Face folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=2, n_head=4, n_positions=512, **SPECIAL_IDS)
    torch.manual_seed(seed)
    return save_model(GPT2LMHeadModel(config).eval(), folder)


@pytest.fixture(scope="session")
def gpt2_checkpoints(tmp_path_factory) -> Path:
    """checkpoint-50, checkpoint-900, checkpoint-1000 (name order differs from step order) and a log folder."""
    root = tmp_path_factory.mktemp("training") / "out"
    for seed, step in enumerate((1000, 50, 900)):
        save_gpt2(root / f"checkpoint-{step}", seed=seed)
    (root / "runs").mkdir()  # a trainer's log folder: not a checkpoint
    (root / "runs" / "events.txt").write_text("logs")
    return root


@pytest.fixture(scope="session")
def few_sentence_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "few.csv"
    path.write_text("text,label\nThe cat sat on the mat,a\nMarkets fell sharply today,b\nIt rained all week,a\n"
                    "Paris is the capital of France,b\n")
    return path
