"""ML-100K posters loader: a tiny synthetic copy of the folder layout, and the real folder when present."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from venomkit.data import DataFormatError, DataWarning, load_dataset, load_ml100k_posters
from venomkit.data.loaders import ML100K_GENRES

REAL = Path("/work/shared/datasets/ml100k-posters")
HEADER = ["movie_id", "title", *ML100K_GENRES, "year", "overview", "original_language", "runtime", "vote_average", "vote_count"]


def _movie(movie_id: int, title: str, genres: list[str], year: str, overview: str) -> str:
    flags = ["1" if g in genres else "0" for g in ML100K_GENRES]
    return ",".join([str(movie_id), f'"{title}"', *flags, year, f'"{overview}"', "en", "90.0", "6.5", "100.0"])


MOVIES = [
    _movie(1, "Toy Story (1995)", ["Animation", "Children", "Comedy"], "1995", "Toys come alive."),
    _movie(2, "GoldenEye (1995)", ["Action", "Thriller"], "1995", ""),
    _movie(3, "unknown", ["genre_unknown"], "nan", "A mystery, with commas."),
]
RATINGS = ["user_id,movie_id,rating,unix_timestamp", "1,1,5,100", "1,2,3,200", "1,3,4,300", "2,1,2,50", "10,3,5,70"]


def make_ml100k(folder: Path, movies: list[str] | None = None, ratings: list[str] | None = None, posters=(1, 3)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "posters").mkdir(exist_ok=True)
    (folder / "items.csv").write_text("\n".join([",".join(HEADER), *(movies or MOVIES)]) + "\n")
    (folder / "ratings.csv").write_text("\n".join(ratings or RATINGS) + "\n")
    for movie_id in posters:
        Image.fromarray(np.full((15, 10, 3), 40 * movie_id, dtype=np.uint8)).save(folder / "posters" / f"{movie_id}.jpg")
    return folder


def test_tiny_copy_loads_with_title_fallback_and_placeholder_warnings(tmp_path):
    movies = MOVIES[:1] + [MOVIES[0]] + MOVIES[1:]  # an exact duplicate row on line 3
    with pytest.warns(DataWarning) as record:
        data = load_ml100k_posters(make_ml100k(tmp_path / "ml", movies=movies))
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert len(messages) == 2
    assert messages[0].startswith("1 items with an empty 'overview' (text set to the title)") and "2 (line 4)" in messages[0]
    assert messages[1].startswith("1 items with a missing image") and "'placeholder'" in messages[1]
    assert data.catalog.item_ids == ["1", "2", "3"]
    assert data.catalog.texts == ["Toys come alive.", "GoldenEye (1995)", "A mystery, with commas."]
    attrs = data.catalog.attributes
    assert attrs["genres"] == [["Animation", "Children", "Comedy"], ["Action", "Thriller"], ["unknown"]]
    assert attrs["primary_genre"] == attrs["category"] == ["Animation", "Action", "unknown"]
    assert attrs["year"] == [1995, 1995, None] and attrs["title"][0] == "Toy Story (1995)"
    assert data.user_ids == ["1", "2", "10"] and data.interactions.nnz == 5
    assert data.interactions.timestamps[0, 2] == 300.0
    assert data.catalog.image(0).shape == (3, 15, 10) and not data.catalog.has_image(1)  # the poster's own size


def test_min_rating_and_other_policies(tmp_path):
    folder = make_ml100k(tmp_path / "ml")
    with pytest.warns(DataWarning):
        assert load_ml100k_posters(folder, min_rating=4).interactions.nnz == 3
    with pytest.raises(DataFormatError) as info:
        load_ml100k_posters(folder, empty_texts="error")
    assert (info.value.file.name, info.value.line, info.value.field) == ("items.csv", 3, "overview")
    with pytest.warns(DataWarning) as record:
        dropped = load_ml100k_posters(folder, missing_images="drop", empty_texts="keep")
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert messages[0].startswith("1 items with an empty 'overview' (kept empty)")
    assert messages[1].startswith("1 items with a missing image") and "their 1 interactions" in messages[1]
    assert dropped.catalog.item_ids == ["1", "3"]


BAD = {
    "differing duplicate": (dict(movies=MOVIES + [MOVIES[0].replace("Toys come alive.", "Other.")]), "items.csv", 5, "overview"),
    "bad genre flag": (dict(movies=[MOVIES[0].replace(",1,1,1,", ",1,2,1,", 1)]), "items.csv", 2, "Children"),
    "bad year": (dict(movies=[MOVIES[0].replace(",1995,", ",mid-90s,")]), "items.csv", 2, "year"),
    "unknown movie": (dict(ratings=RATINGS + ["2,77,4,1"]), "ratings.csv", 7, "movie_id"),
    "bad rating": (dict(ratings=RATINGS[:2] + ["1,2,good,200"]), "ratings.csv", 3, "rating"),
    "short rating row": (dict(ratings=RATINGS[:3] + ["1,3,4"]), "ratings.csv", 4, "unix_timestamp"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ml100k_input_names_file_line_and_field(tmp_path, case):
    kwargs, file_name, line, field = BAD[case]
    folder = make_ml100k(tmp_path / "ml", **kwargs)
    with pytest.raises(DataFormatError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the fixture's own empty overview / missing poster
        load_ml100k_posters(folder)
    assert (info.value.file.name, info.value.line, info.value.field) == (file_name, line, field)
    assert file_name in str(info.value) and f"line {line}" in str(info.value) and repr(field) in str(info.value)


def test_load_dataset_recognises_the_posters_folder(tmp_path):
    with pytest.warns(DataWarning):
        data = load_dataset(str(make_ml100k(tmp_path / "ml")), split="loo")
    assert data.name == "ml100k-posters" and data.split.test.nnz == 1  # only user 1 has 3 ratings


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is not present")
def test_real_ml100k_posters_folder():
    start = time.perf_counter()
    with pytest.warns(DataWarning) as record:
        data = load_ml100k_posters(REAL)
    seconds = time.perf_counter() - start
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert len(messages) == 2
    assert messages[0].startswith("18 items with an empty 'overview'")
    assert messages[1].startswith("19 items with a missing image")
    assert (data.n_users, data.n_items, data.interactions.nnz) == (943, 1682, 100_000)
    assert sum(not data.catalog.has_image(i) for i in range(data.n_items)) == 19
    assert all(text.strip() for text in data.catalog.texts)
    assert data.catalog.attributes["title"][0] == "Toy Story (1995)"
    assert data.catalog.attributes["genres"][0] == ["Animation", "Children", "Comedy"]
    assert data.catalog.image_batch([0, 1]).shape == (2, 3, 138, 92)  # native posters (92 x 138)
    assert data.interactions.timestamps is not None and data.interactions.timestamps.nnz == 100_000
    split = data.split
    assert split.train.nnz + split.valid.nnz + split.test.nnz == 100_000
    assert seconds < 10, f"loading took {seconds:.1f} s (images must stay lazy)"
