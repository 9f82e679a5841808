"""core.tokens: one way to show tokens as text, used by the feature pages, trajectories and reports."""

from __future__ import annotations

import numpy as np

import core.activations
from core.analysis import features
from core.tokens import display_tokens


def test_display_tokens__is_the_one_function_every_caller_uses():
    assert core.activations.display_tokens is display_tokens
    assert features.readable_tokens is display_tokens


def test_display_tokens__a_wordpiece_continuation_joins_the_piece_before_it(minilm):
    ids = minilm.tokenizer("Layerscope reads layers")["input_ids"]
    tokens = minilm.tokenizer.convert_ids_to_tokens(ids)  # real WordPiece: ['[CLS]', 'layers', '##co', '##pe', ...]
    assert any(t.startswith("##") for t in tokens)
    shown = display_tokens(tokens)
    assert "".join(shown) == "[CLS] layerscope reads layers [SEP]"
    assert display_tokens(["[CLS]", "rain", "##ing", "."]) == ["[CLS]", " rain", "ing", " ."]
    # the same tokens as a numpy array of strings (as a run stores them) give the same text
    assert display_tokens(np.array(tokens)) == shown


def test_display_tokens__bpe_marks_become_spaces_and_newlines():
    assert display_tokens(["Some", "one", "Ġstole", "Ċ"]) == ["Some", "one", " stole", "\n"]
    assert display_tokens(["Hello", "Ċ"]) == ["Hello", "\n"]  # a newline mark alone means BPE too
    assert display_tokens(["▁The", "▁cat"]) == [" The", " cat"]
