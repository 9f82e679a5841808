"""core.analysis.sae.batches: the training split's size and how many times a token budget repeats it."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.sae.batches import held_out_split, token_rows, training_epochs, training_split_tokens
from core.analysis.sae.config import SAEConfig
from core.errors import LayerscopeError


@pytest.fixture()
def tokens_run(tmp_path, write_run):
    """A tokens run of 10 inputs of 1..10 tokens (55 tokens, d = 3)."""
    lengths = np.arange(1, 11)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.random.default_rng(0).standard_normal((int(offsets[-1]), 3)).astype(np.float32)
    return write_run(tmp_path / "run", {"layer": values}, pooling="tokens", offsets=offsets)


@pytest.mark.parametrize("exclude_first", [True, False])
def test_training_split_tokens__is_the_split_training_reads_and_the_rest_is_held_out(tokens_run, exclude_first):
    config = SAEConfig(held_out_fraction=0.3, seed=4, exclude_first_token=exclude_first)
    split = training_split_tokens(tokens_run, held_out_fraction=config.held_out_fraction, seed=config.seed,
                                  exclude_first_token=exclude_first)
    train, held = held_out_split(tokens_run.n_inputs, config.held_out_fraction, config.seed)
    assert split == token_rows(tokens_run, train, exclude_first_token=exclude_first).size
    held_tokens = token_rows(tokens_run, held, exclude_first_token=exclude_first).size
    assert split + held_tokens == 55 - (10 if exclude_first else 0)  # every token is in exactly one part
    assert 0 < split < 55


def test_training_epochs__whole_batches_over_the_split():
    assert training_epochs(1_000_000, 1024, 20_000) == pytest.approx(976 * 1024 / 20_000)  # 976 steps of 1024
    assert training_epochs(2_000, 1024, 20_000) == pytest.approx(1024 / 20_000)  # one step: less than one pass
    assert training_epochs(100, 1024, 20_000) == pytest.approx(1024 / 20_000)  # at least one step, as training
    steps = SAEConfig(training_tokens=50_000, batch_size=256).total_steps
    assert training_epochs(50_000, 256, 1_000) == pytest.approx(steps * 256 / 1_000)


def test_training_epochs__refuses_an_empty_split():
    with pytest.raises(LayerscopeError, match="split_tokens=0 must be"):
        training_epochs(1_000, 10, 0)
