"""core.analysis.sae.batches: a run's token rows, the held-out split of inputs and activation batches."""

from __future__ import annotations

import numpy as np
import torch

from core.analysis.sae import activation_batches, held_out_split, token_rows


def test_token_rows__leaves_first_tokens_out(demo_tokens):
    acts, _ = demo_tokens
    rows = token_rows(acts, np.array([0, 2]), exclude_first_token=True)
    expected = np.r_[acts.offsets[0] + 1 : acts.offsets[1], acts.offsets[2] + 1 : acts.offsets[3]]
    assert np.array_equal(rows, expected)
    assert token_rows(acts, exclude_first_token=False).size == int(acts.lengths.sum())


def test_held_out_split__is_a_seeded_partition_of_inputs():
    train, held = held_out_split(100, 0.1, seed=3)
    assert held.size == 10 and np.intersect1d(train, held).size == 0
    assert np.array_equal(np.sort(np.r_[train, held]), np.arange(100))
    assert np.array_equal(held_out_split(100, 0.1, seed=3)[1], held)


def test_activation_batches__one_unshuffled_epoch_reads_every_row_in_order():
    values = np.arange(50, dtype=np.float32).reshape(25, 2)
    rows = np.array([1, 3, 4, 8, 20, 24])
    batches = list(activation_batches(values, rows, batch_size=4, epochs=1, shuffle=False, buffer_bytes=16))
    assert [b.shape[0] for b in batches] == [4, 2]
    assert np.array_equal(torch.cat(batches).numpy(), values[rows])


def test_activation_batches__shuffled_epochs_cover_all_rows():
    values = np.arange(200, dtype=np.float32).reshape(100, 2)
    rows = np.arange(0, 100, 2)
    batches = list(activation_batches(values, rows, batch_size=10, epochs=2, seed=1, buffer_bytes=200))
    seen = torch.cat(batches).numpy()[:, 0] / 2
    assert sorted(seen.tolist()) == sorted(np.repeat(rows, 2).tolist())
