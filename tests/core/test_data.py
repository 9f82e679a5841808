"""Bundled demo sets and the user's own files, with their error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import core
from core.errors import LayerscopeError


def test_demo_cities__real_places_with_coordinates():
    cities = core.load_dataset("demo:cities")
    assert 2000 <= len(cities) <= 5000
    assert set(cities.label_columns) == {"continent", "country", "latitude", "longitude", "population"}
    row = cities.table.set_index("text").loc["Tokyo"]
    assert row["country"] == "Japan" and row["continent"] == "Asia"
    assert abs(row["latitude"] - 35.7) < 0.5 and abs(row["longitude"] - 139.7) < 0.5
    assert cities.table["text"].is_unique
    assert cities.table["continent"].nunique() == 6


def test_demo_words__vader_valence():
    words = core.load_dataset("demo:words")
    assert len(words) > 6000
    valence = words.table.set_index("text")["valence"]
    assert valence["love"] > 2 and valence["hate"] < -2


def test_demo_sentences__topics_sentiment_lengths():
    data = core.load_dataset("demo:sentences")
    table = data.table
    assert len(table) >= 600 and table["text"].is_unique
    assert table["topic"].nunique() >= 4
    assert set(table["sentiment"]) == {"positive", "negative"}
    words = table["text"].str.split().str.len()
    assert words.min() >= 5 and words.max() <= 40 and words.std() > 5


def test_demo_digits__images():
    digits = core.load_dataset("demo:digits")
    assert digits.modality == "image" and digits.images.shape == (1797, 8, 8)
    assert digits.images.dtype == np.uint8 and digits.images.max() == 255
    assert digits.load_images([0])[0].size == (8, 8)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_load_dataset__table_files(tmp_path, suffix):
    table = pd.DataFrame({"sentence": ["one input", "two inputs here", "three"], "label": ["a", "b", "a"], "score": [1.0, 2.0, 3.0]})
    path = tmp_path / f"data{suffix}"
    {".csv": lambda: table.to_csv(path, index=False),
     ".jsonl": lambda: table.to_json(path, orient="records", lines=True),
     ".parquet": lambda: table.to_parquet(path)}[suffix]()
    data = core.load_dataset(path, label_columns=["label"])
    assert data.text_column == "sentence" and data.label_columns == ("label",)
    assert data.texts == table["sentence"].tolist()
    assert data.fingerprint == core.load_dataset(path, label_columns=["label"]).fingerprint
    assert core.load_dataset(path).label_columns == ("label", "score")


def test_load_dataset__text_file_one_input_per_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("first line\n\nsecond line\n")
    assert core.load_dataset(path).texts == ["first line", "second line"]


def test_load_dataset__image_folder(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 10, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    data = core.load_dataset(tmp_path / "imgs")
    assert data.modality == "image" and len(data) == 4
    assert data.table["label"].tolist() == ["cat", "cat", "dog", "dog"]
    assert data.load_images([3])[0].size == (10, 10)


def test_fingerprint__changes_with_content(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a b", "c d"], "y": [0, 1]}).to_csv(path, index=False)
    before = core.load_dataset(path).fingerprint
    pd.DataFrame({"text": ["a b", "c e"], "y": [0, 1]}).to_csv(path, index=False)
    assert core.load_dataset(path).fingerprint != before


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (lambda p: p / "missing.csv", {}, "does not exist"),
        (lambda p: _write(p, "bad.parquet", b"not a parquet file"), {}, "could not parse"),
        (lambda p: _write(p, "bad.jsonl", "{not json\n"), {}, "could not parse"),
        (lambda p: _write(p, "data.xlsx", "x"), {}, "suffix '.xlsx'"),
        (lambda p: _write(p, "empty.csv", "text,label\n"), {}, "is empty"),
        (lambda p: _write(p, "d.csv", "text,label\nhello,a\n"), {"text_column": "sentence"}, "text_column='sentence'"),
        (lambda p: _write(p, "d.csv", "text,label\nhello,a\n"), {"label_columns": ["topic"]}, "label column 'topic'"),
        (lambda p: _write(p, "n.csv", "text,label\n1,a\n2,b\n"), {}, "must hold strings"),
        (lambda p: _write(p, "n.csv", "num,score\n1,2.5\n2,3.5\n"), {}, "no column of text"),
        (lambda p: p, {}, "no images"),
    ],
)
def test_load_dataset__bad_input_names_the_value(tmp_path, setup, kwargs, message):
    with pytest.raises(LayerscopeError, match=message):
        core.load_dataset(setup(tmp_path), **kwargs)


def test_load_dataset__unknown_demo():
    with pytest.raises(LayerscopeError, match="demo:nope.*demo:sentences"):
        core.load_dataset("demo:nope")


# ----- names and keys: the user's file name is shown, the content is the key ---------------------------
REVIEWS = b"review,sentiment\nthe food was great,positive\nawful slow service,negative\nquite fine overall,positive\n"


def test_display_name__bundled_name_or_the_files_own_name(tmp_path):
    from core.data.naming import display_name

    assert display_name("demo:cities") == "demo:cities"
    assert display_name(tmp_path / "uploads" / "0123abcd" / "my_reviews.csv") == "my_reviews.csv"
    assert display_name(f"{tmp_path}/images/") == "images"
    path = _write(tmp_path, "reviews.csv", REVIEWS)
    assert core.load_dataset(path).display_name == "reviews.csv"
    assert core.load_dataset("demo:words").display_name == "demo:words"


def test_save_upload__keeps_the_users_name_in_a_folder_named_by_content(tmp_path):
    from core.data.naming import save_upload

    first = save_upload(tmp_path / "uploads", "my_reviews.csv", REVIEWS)
    again = save_upload(tmp_path / "uploads", "my_reviews.csv", REVIEWS)
    renamed = save_upload(tmp_path / "uploads", "copy of reviews.csv", REVIEWS)
    other = save_upload(tmp_path / "uploads", "my_reviews.csv", REVIEWS + b"one more line,negative\n")
    assert first == again and first.name == "my_reviews.csv" and first.read_bytes() == REVIEWS
    assert renamed.parent == first.parent and renamed.name == "copy of reviews.csv"
    assert other.parent != first.parent and other.name == "my_reviews.csv"
    # a name carrying folders or characters a file system refuses stays inside the uploads folder
    odd = save_upload(tmp_path / "uploads", "..\\..\\etc/pass:wd?.csv", REVIEWS)
    assert odd.parent == first.parent and odd.name == "pass_wd_.csv"


def test_upload_and_path__same_bytes_are_one_fingerprint_and_one_run(tmp_path, minilm):
    from core.data.naming import save_upload

    store = core.Store(tmp_path / "ws")
    by_path = core.load_dataset(_write(tmp_path, "reviews.csv", REVIEWS))
    uploaded = core.load_dataset(save_upload(store.root / "uploads", "my_reviews.csv", REVIEWS))
    assert uploaded.fingerprint == by_path.fingerprint and uploaded.display_name == "my_reviews.csv"
    first = core.extract(minilm, uploaded, layers=["encoder.layer.0"], store=store)
    second = core.extract(minilm, by_path, layers=["encoder.layer.0"], store=store)
    assert second.key == first.key and [r["key"] for r in store.list_runs()] == [first.key]
    assert first.dataset_name == "my_reviews.csv" and first.dataset_spec.endswith("my_reviews.csv")
    # other settings are another run
    assert core.extract(minilm, by_path, layers=["encoder.layer.0"], pooling="max", store=store).key != first.key


def test_run_key__a_bundled_set_keeps_the_key_it_was_stored_under(minilm, few_sentences):
    from core.extract import run_key
    from core.store import make_key

    layers = minilm.resolve_layers("all")
    stored = make_key({"what": "activations", "model": minilm.identity,
                       "dataset": {"name": "demo:sentences", "fingerprint": few_sentences.fingerprint},
                       "layers": layers, "pooling": "mean", "dtype": "float32", "max_length": minilm.max_length})
    assert run_key(minilm, few_sentences, layers, "mean", "float32", minilm.max_length) == stored


# ----- the text column: named and missing, or guessed -----------------------------------------------------
def test_missing_text_column__names_the_column_asked_for_and_those_present(tmp_path):
    path = _write(tmp_path, "reviews.csv", REVIEWS)
    with pytest.raises(LayerscopeError) as err:
        core.load_dataset(path, text_column="body", label_columns=["sentiment"])
    assert "text_column='body'" in str(err.value) and "columns are: review, sentiment" in str(err.value)


def test_guessed_text_column__is_never_a_label_column_the_user_named(tmp_path):
    path = _write(tmp_path, "labels_first.csv", b"sentiment,review\npositive,the food was great\nnegative,awful\n")
    assert core.load_dataset(path).text_column == "sentiment"  # the documented guess: the first column of strings
    with pytest.raises(LayerscopeError, match="first column of strings, 'sentiment', is one of the label columns you "
                                              r"named \(sentiment\).*columns are: sentiment, review"):
        core.load_dataset(path, label_columns=["sentiment"])
    data = core.load_dataset(path, text_column="review", label_columns=["sentiment"])
    assert data.texts == ["the food was great", "awful"]


def test_missing_text_column__cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from core.cli import main

    path = _write(tmp_path, "reviews.csv", REVIEWS)
    code = main(["extract", "--model", "minilm", "--data", str(path), "--text-column", "body",
                 "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "text_column='body'" in err and "review, sentiment" in err


def test_errors_name_the_uploaded_file_not_its_workspace_folder(tmp_path):
    from core.data.naming import save_upload

    path = save_upload(tmp_path / "uploads", "my_reviews.csv", b"review,sentiment\n")
    with pytest.raises(LayerscopeError) as err:
        core.load_dataset(path)
    assert "'my_reviews.csv' is empty" in str(err.value) and path.parent.name not in str(err.value)
