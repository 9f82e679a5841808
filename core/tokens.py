"""Token strings shown as text, the same way on every page, figure and export.

Tokenizers mark word boundaries in two ways. Byte-level BPE and SentencePiece (GPT-2,
Llama, SmolLM2) mark a word start: `Ġ` or `▁` stands for the space before it, `Ċ` for a
newline. WordPiece (BERT, MiniLM) marks a continuation instead: `##ing` joins the piece
before it, and every other piece starts a new word. Both are turned into plain text, so
concatenating the displayed tokens of an input gives readable words.
"""

from __future__ import annotations

from collections.abc import Iterable

# how tokenizers mark word starts and line breaks in token strings, shown as text
TOKEN_MARKS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}
WORDPIECE_CONTINUATION = "##"


def display_tokens(tokens: Iterable[str]) -> list[str]:
    """Token strings as text: BPE marks (Ġ, ▁, Ċ) become spaces and newlines; a WordPiece
    `##piece` joins the token before it and any other WordPiece token gets a leading space."""
    tokens = [str(t) for t in tokens]
    # a WordPiece vocabulary holds none of the BPE marks; any of them means a BPE tokenizer
    bpe = any(mark in token for token in tokens for mark in TOKEN_MARKS)
    out = []
    for i, token in enumerate(tokens):
        if bpe:
            for mark, text in TOKEN_MARKS.items():
                token = token.replace(mark, text)
        elif token.startswith(WORDPIECE_CONTINUATION):
            token = token[len(WORDPIECE_CONTINUATION):]
        elif i > 0:
            token = " " + token
        out.append(token)
    return out
