"""Atomic-file and CSV loaders, write/read round trip, and load_dataset spec resolution."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from venomkit.data import (
    Catalog,
    DataFormatError,
    Dataset,
    DataWarning,
    Interactions,
    load_atomic,
    load_csv,
    load_dataset,
    write_atomic,
)

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\ttext:token_seq\tcategory:token\ttags:token_seq\tprice:float"
# Lines (1-based, header is line 1): u10 is listed before u2 to check natural ordering of users.
INTER_ROWS = [
    "u1\ti1\t5\t100",
    "u1\ti2\t3\t300",
    "u1\ti3\t4\t200",
    "u10\ti1\t1\t50",
    "u10\ti3\t5\t60",
    "u2\ti2\t2\t10",
    "u2\ti1\t4\t20",
    "u2\ti3\t4\t30",
]
ITEM_ROWS = [
    "i1\ta red cotton shirt\tshirt\tred cotton\t19.5",
    "i2\ta blue mug\tmug\tblue\t7",
    "i3\tstriped wool scarf\tscarf\t\t",
]
COLOURS = {"i1": (255, 0, 0), "i2": (0, 0, 255), "i3": (0, 255, 0)}


def _solid(path: Path, colour: tuple[int, int, int], size: int = 10) -> None:
    Image.fromarray(np.tile(np.array(colour, dtype=np.uint8), (size, size, 1))).save(path)


def make_atomic(
    folder: Path,
    inter_rows: list[str] | None = None,
    item_rows: list[str] | None = None,
    inter_header: str = INTER_HEADER,
    item_header: str = ITEM_HEADER,
    images: dict[str, str] | None = None,
) -> Path:
    """A tiny atomic dataset ``shop``: ``images`` maps item id -> 'png' | 'jpg' | 'corrupt' | 'none'."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shop.inter").write_text("\n".join([inter_header, *(INTER_ROWS if inter_rows is None else inter_rows)]) + "\n")
    (folder / "shop.item").write_text("\n".join([item_header, *(ITEM_ROWS if item_rows is None else item_rows)]) + "\n")
    (folder / "images").mkdir(exist_ok=True)
    kinds = {"i1": "png", "i2": "jpg", "i3": "png"} if images is None else images
    for item_id, kind in kinds.items():
        if kind == "corrupt":
            (folder / "images" / f"{item_id}.png").write_bytes(b"not an image at all")
        elif kind != "none":
            _solid(folder / "images" / f"{item_id}.{kind}", COLOURS.get(item_id, (9, 9, 9)))
    return folder


def _data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def test_load_atomic_reads_ids_texts_typed_attributes_images_and_timestamps(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # clean input: no warning at all
        data = load_atomic(make_atomic(tmp_path / "shop"))
    assert data.name == "shop"
    assert data.catalog.item_ids == ["i1", "i2", "i3"]
    assert data.catalog.texts[0] == "a red cotton shirt"
    attrs = data.catalog.attributes
    assert attrs["category"] == ["shirt", "mug", "scarf"]
    assert attrs["tags"] == [["red", "cotton"], ["blue"], []]
    assert attrs["price"] == [19.5, 7, None] and isinstance(attrs["price"][1], int)
    assert data.user_ids == ["u1", "u2", "u10"]  # natural order
    assert data.interactions.nnz == 8
    image = data.catalog.image(0)
    assert image.shape == (3, 10, 10) and torch.allclose(image[0], torch.ones(10, 10))  # the file's own size
    assert data.catalog.image(1)[2].mean() > 0.9  # the .jpg is found too
    u1 = data.user_ids.index("u1")
    assert data.interactions.timestamps[u1, 1] == 300.0
    split = data.split
    assert split.train.nnz + split.valid.nnz + split.test.nnz == 8


def test_byte_order_mark_crlf_and_stray_cr_do_not_break_fields_or_line_numbers(tmp_path):
    folder = make_atomic(tmp_path / "shop")
    rows = ITEM_ROWS[:1] + ["i2\ta blue\rmug\tmug\tblue\t7", "i3\tscarf\tscarf\t\tcheap"]
    content = "\r\n".join([ITEM_HEADER, *rows]) + "\r\n"
    (folder / "shop.item").write_bytes(b"\xef\xbb\xbf" + content.encode())
    with pytest.raises(DataFormatError) as info:
        load_atomic(folder)
    assert (info.value.line, info.value.field) == (4, "price")
    (folder / "shop.item").write_bytes(b"\xef\xbb\xbf" + content.replace("cheap", "3").encode())
    data = load_atomic(folder)
    assert data.catalog.item_ids == ["i1", "i2", "i3"] and data.catalog.texts[1] == "a blue\rmug"


def test_leave_one_out_via_loader_follows_timestamps(tmp_path):
    data = load_atomic(make_atomic(tmp_path / "shop"), split="loo")
    test = data.split.test.matrix.toarray()
    valid = data.split.valid.matrix.toarray()
    # RecBole's leave-one-out: u10 has 2 interactions, its later one (i3, t=60) is its test item, none validates.
    latest = {"u1": ("i2", "i3"), "u10": ("i3", None), "u2": ("i3", "i1")}
    for user, (last, before) in latest.items():
        u = data.user_ids.index(user)
        got_test = [data.catalog.item_ids[i] for i in np.flatnonzero(test[u])]
        got_valid = [data.catalog.item_ids[i] for i in np.flatnonzero(valid[u])]
        assert got_test == ([last] if last else []) and got_valid == ([before] if before else [])


def test_min_rating_keeps_only_high_ratings(tmp_path):
    data = load_atomic(make_atomic(tmp_path / "shop"), min_rating=4)
    assert data.interactions.nnz == sum(float(row.split("\t")[2]) >= 4 for row in INTER_ROWS) == 5


# --- bad input: (what to write, file that is named, line, field) ------------------------------
BAD_ATOMIC = {
    "inter row too short": (dict(inter_rows=INTER_ROWS[:2] + ["u1\ti3\t4"] + INTER_ROWS[3:]), "shop.inter", 4, "timestamp"),
    "inter row too long": (dict(inter_rows=INTER_ROWS[:4] + ["u10\ti1\t1\t50\textra"]), "shop.inter", 6, "column 5"),
    "non-numeric timestamp": (dict(inter_rows=INTER_ROWS[:1] + ["u1\ti2\t3\tyesterday"]), "shop.inter", 3, "timestamp"),
    "non-numeric rating": (dict(inter_rows=["u1\ti1\tfive\t100"]), "shop.inter", 2, "rating"),
    "unknown item id": (dict(inter_rows=INTER_ROWS[:6] + ["u2\ti99\t4\t20"]), "shop.inter", 8, "item_id"),
    "empty user id": (dict(inter_rows=["\ti1\t4\t20"]), "shop.inter", 2, "user_id"),
    "item row too short": (dict(item_rows=ITEM_ROWS[:1] + ["i2\ta blue mug\tmug"] + ITEM_ROWS[2:]), "shop.item", 3, "tags"),
    "non-numeric float attribute": (dict(item_rows=ITEM_ROWS[:2] + ["i3\tscarf\tscarf\t\tcheap"]), "shop.item", 4, "price"),
    "duplicate item id": (dict(item_rows=ITEM_ROWS + ["i2\tagain\tmug\t\t1"]), "shop.item", 5, "item_id"),
    "empty text": (dict(item_rows=ITEM_ROWS[:1] + ["i2\t  \tmug\tblue\t7"] + ITEM_ROWS[2:]), "shop.item", 3, "text"),
    "header without type": (dict(item_header=ITEM_HEADER.replace("category:token", "category")), "shop.item", 1, "category"),
    "header with unknown type": (
        dict(inter_header=INTER_HEADER.replace("rating:float", "rating:int")), "shop.inter", 1, "rating"
    ),
    "header without text field": (dict(item_header=ITEM_HEADER.replace("text:", "body:")), "shop.item", 1, "text"),
}


@pytest.mark.parametrize("case", sorted(BAD_ATOMIC))
def test_bad_atomic_input_names_file_line_and_field(tmp_path, case):
    kwargs, file_name, line, field = BAD_ATOMIC[case]
    folder = make_atomic(tmp_path / "shop", **kwargs)
    with pytest.raises(DataFormatError) as info:
        load_atomic(folder)
    error = info.value
    assert (error.file.name, error.line, error.field) == (file_name, line, field)
    message = str(error)
    assert file_name in message and f"line {line}" in message and repr(field) in message


def test_missing_image_under_error_policy_names_item_line_and_image_path(tmp_path):
    folder = make_atomic(tmp_path / "shop", images={"i1": "png", "i2": "none", "i3": "png"})
    with pytest.raises(DataFormatError) as info:
        load_atomic(folder, missing_images="error")
    assert (info.value.file.name, info.value.line, info.value.field) == ("shop.item", 3, "image")
    assert "i2" in str(info.value) and "images" in str(info.value)


def test_missing_image_placeholder_gives_one_counted_warning(tmp_path):
    folder = make_atomic(tmp_path / "shop", images={"i1": "png", "i2": "none", "i3": "none"})
    with pytest.warns(DataWarning) as record:
        data = load_atomic(folder)
    messages = _data_warnings(record)
    assert len(messages) == 1 and messages[0].startswith("2 items with a missing image")
    assert "'placeholder'" in messages[0] and "i2" in messages[0] and "i3" in messages[0]
    assert data.n_items == 3 and [data.catalog.has_image(i) for i in range(3)] == [True, False, False]
    assert torch.all(data.catalog.image(1) == data.catalog.placeholder_value)


def test_missing_image_drop_removes_the_item_and_its_interactions(tmp_path):
    folder = make_atomic(tmp_path / "shop", images={"i1": "png", "i2": "none", "i3": "png"})
    with pytest.warns(DataWarning) as record:
        data = load_atomic(folder, missing_images="drop")
    messages = _data_warnings(record)
    assert len(messages) == 1 and messages[0].startswith("1 items with a missing image")
    assert "their 2 interactions" in messages[0]
    assert data.catalog.item_ids == ["i1", "i3"] and data.interactions.nnz == 6
    assert data.catalog.attributes["category"] == ["shirt", "scarf"]


@pytest.mark.parametrize("damage", ["garbage", "truncated png", "truncated jpg"])
def test_corrupt_image_is_found_when_the_catalog_loads(tmp_path, damage):
    folder = make_atomic(tmp_path / "shop", images={"i1": "png", "i2": "jpg" if "jpg" in damage else "png", "i3": "png"})
    path = next((folder / "images").glob("i2.*"))
    if damage == "garbage":
        path.write_bytes(b"not an image at all")
    else:  # an interrupted download: the header is fine, the data stops half way
        _solid(path, (200, 30, 30), size=64)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as info:
        load_atomic(folder, missing_images="error")
    message = str(info.value)
    assert (info.value.file.name, info.value.line, info.value.field) == ("shop.item", 3, "image")
    assert "corrupt" in message and path.name in message and "--missing-images" in message and "\n" not in message
    with pytest.warns(DataWarning, match=r"1 items with a missing or corrupt image \(0 missing, 1 corrupt\)"):
        checked = load_atomic(folder)  # the default policy: a grey placeholder
    assert not checked.catalog.has_image(1)
    assert torch.all(checked.catalog.image(1) == checked.catalog.placeholder_value)


def test_empty_text_policies_keep_and_drop(tmp_path):
    rows = ITEM_ROWS[:2] + ["i3\t\tscarf\t\t"]
    folder = make_atomic(tmp_path / "shop", item_rows=rows)
    with pytest.warns(DataWarning, match="1 items with an empty 'text'.*'keep'"):
        kept = load_atomic(folder, empty_texts="keep")
    assert kept.catalog.texts[2] == "" and kept.n_items == 3
    with pytest.warns(DataWarning, match="their 3 interactions") as record:
        dropped = load_atomic(folder, empty_texts="drop")
    assert len(_data_warnings(record)) == 1
    assert dropped.catalog.item_ids == ["i1", "i2"] and dropped.interactions.nnz == 5


def test_dropping_every_item_of_a_user_removes_the_user_with_a_warning(tmp_path):
    rows = ["u1\ti1\t5\t1", "u1\ti2\t5\t2", "u9\ti3\t4\t3"]
    folder = make_atomic(tmp_path / "shop", inter_rows=rows, images={"i1": "png", "i2": "png", "i3": "none"})
    with pytest.warns(DataWarning) as record:
        data = load_atomic(folder, missing_images="drop")
    messages = _data_warnings(record)
    assert len(messages) == 2 and any(m.startswith("1 users with no interaction left") for m in messages)
    assert data.user_ids == ["u1"]


def test_repeated_pairs_are_merged_with_a_counted_warning(tmp_path):
    rows = INTER_ROWS + ["u1\ti1\t2\t999"]
    with pytest.warns(DataWarning, match="1 repeated user-item pairs.*'merge'"):
        data = load_atomic(make_atomic(tmp_path / "shop", inter_rows=rows))
    assert data.interactions.nnz == 8
    assert data.interactions.timestamps[data.user_ids.index("u1"), 0] == 999.0


def test_policy_arguments_are_validated(tmp_path):
    folder = make_atomic(tmp_path / "shop")
    with pytest.raises(ValueError, match="missing_images"):
        load_atomic(folder, missing_images="ignore")
    with pytest.raises(ValueError, match="empty_texts"):
        load_atomic(folder, empty_texts="title")
    with pytest.raises(ValueError, match="split"):
        load_atomic(folder, split="time")


def test_write_atomic_round_trip(tmp_path):
    source = load_atomic(make_atomic(tmp_path / "src"))
    write_atomic(source, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images", "shop.inter", "shop.item"]
    back = load_atomic(tmp_path / "out")
    assert back.catalog.item_ids == source.catalog.item_ids
    assert back.catalog.texts == source.catalog.texts
    assert back.catalog.attributes == source.catalog.attributes
    assert back.user_ids == source.user_ids
    assert (back.interactions.matrix != source.interactions.matrix).nnz == 0
    assert (back.interactions.timestamps != source.interactions.timestamps).nnz == 0
    assert torch.equal(back.catalog.image_batch([0, 1, 2]), source.catalog.image_batch([0, 1, 2]))
    for part in ("train", "valid", "test"):
        assert (getattr(back.split, part).matrix != getattr(source.split, part).matrix).nnz == 0


def test_write_atomic_round_trip_of_in_memory_images_and_mixed_attributes(tmp_path):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    catalog = Catalog(
        item_ids=["a", "b"],
        texts=["tab\tand\nnewline", "plain"],
        attributes={"colour": ["red", None], "year": [1999, 2001], "score": [0.25, np.float32(1.5)], "tags": [["x"], []]},
        images=[images[0], images[1]],
    )
    interactions = Interactions.from_pairs([0, 1, 1], [0, 0, 1], 2, 2)
    write_atomic(Dataset("mem", catalog, interactions, user_ids=["alice", "bob"]), tmp_path / "mem")
    back = load_atomic(tmp_path / "mem")
    assert back.catalog.texts == ["tab and newline", "plain"]  # tabs/newlines become spaces (documented)
    assert back.catalog.attributes == {"colour": ["red", None], "year": [1999, 2001], "score": [0.25, 1.5], "tags": [["x"], []]}
    assert back.interactions.timestamps is None and back.user_ids == ["alice", "bob"]
    assert (back.catalog.image_batch([0, 1]) - images).abs().max() <= 0.5 / 255 + 1e-6


def test_write_atomic_rejects_ids_that_cannot_name_files(tmp_path):
    catalog = Catalog(item_ids=["a/b"], texts=["t"])
    with pytest.raises(ValueError, match="item id"):
        write_atomic(Dataset("x", catalog, Interactions.from_pairs([0], [0], 1, 1)), tmp_path)


# --- generic CSV --------------------------------------------------------------------------------


def _make_csv(folder: Path, item_lines: list[str] | None = None, inter_lines: list[str] | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pics").mkdir(exist_ok=True)
    _solid(folder / "pics" / "p1.png", (255, 0, 0))
    _solid(folder / "pics" / "p2.png", (0, 0, 255))
    items = item_lines or ["sku,description,picture,brand", "A,red thing,pics/p1.png,acme", 'B,"blue, round",pics/p2.png,']
    inters = inter_lines or ["customer,sku,when", "c1,A,5", "c1,B,6", "c2,B,1"]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    (folder / "events.csv").write_text("\n".join(inters) + "\n")
    return folder / "events.csv", folder / "items.csv"


CSV_COLUMNS = dict(user_col="customer", item_col="sku", text_col="description", image_col="picture", timestamp_col="when")


def test_load_csv_reads_image_paths_texts_and_timestamps(tmp_path):
    events, items = _make_csv(tmp_path)
    data = load_csv(events, items, **CSV_COLUMNS)
    assert data.catalog.item_ids == ["A", "B"] and data.catalog.texts == ["red thing", "blue, round"]
    assert data.catalog.attributes == {"brand": ["acme", None]}
    assert data.catalog.image(1)[2].mean() == 1.0
    assert data.interactions.timestamps[0, 1] == 6.0 and data.user_ids == ["c1", "c2"]


BAD_CSV = {
    "unknown item": (None, ["customer,sku,when", "c1,A,5", "c1,Z,6"], "events.csv", 3, "sku"),
    "bad timestamp": (None, ["customer,sku,when", "c1,A,soon"], "events.csv", 2, "when"),
    "short inter row": (None, ["customer,sku,when", "c1,A,5", "c2,B"], "events.csv", 3, "when"),
    "missing column": (None, ["customer,item,when", "c1,A,5"], "events.csv", 1, "sku"),
    "empty text": (["sku,description,picture,brand", "A,,pics/p1.png,acme"], None, "items.csv", 2, "description"),
    "duplicate item": (["sku,description,picture,brand", "A,x,pics/p1.png,", "A,y,pics/p2.png,"], None, "items.csv", 3, "sku"),
    "long item row": (["sku,description,picture,brand", "A,x,pics/p1.png,acme,extra"], None, "items.csv", 2, "column 5"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_input_names_file_line_and_field(tmp_path, case):
    item_lines, inter_lines, file_name, line, field = BAD_CSV[case]
    events, items = _make_csv(tmp_path, item_lines, inter_lines)
    with pytest.raises(DataFormatError) as info:
        load_csv(events, items, **CSV_COLUMNS)
    assert (info.value.file.name, info.value.line, info.value.field) == (file_name, line, field)
    assert file_name in str(info.value) and f"line {line}" in str(info.value)


def test_load_csv_missing_image_policies(tmp_path):
    lines = ["sku,description,picture,brand", "A,red,pics/p1.png,", "B,gone,pics/nothere.png,", "C,empty cell,,"]
    events, items = _make_csv(tmp_path, lines, ["customer,sku,when", "c1,A,1", "c1,B,2", "c2,C,3"])
    with pytest.raises(DataFormatError) as info:
        load_csv(events, items, missing_images="error", **CSV_COLUMNS)
    assert (info.value.line, info.value.field) == (3, "picture") and "nothere.png" in str(info.value)
    with pytest.warns(DataWarning) as record:
        data = load_csv(events, items, missing_images="drop", **CSV_COLUMNS)
    messages = _data_warnings(record)
    assert len(messages) == 2 and "2 items with a missing image" in messages[0] and "'drop'" in messages[0]
    assert messages[1].startswith("1 users with no interaction left") and messages[1].endswith("c2")
    assert data.catalog.item_ids == ["A"] and data.user_ids == ["c1"]


def test_load_csv_with_image_dir_by_item_id(tmp_path):
    events, items = _make_csv(tmp_path)
    (tmp_path / "by_id").mkdir()
    _solid(tmp_path / "by_id" / "A.jpg", (0, 255, 0))
    with pytest.warns(DataWarning, match="1 items with a missing image"):
        data = load_csv(events, items, user_col="customer", item_col="sku", text_col="description", image_dir=tmp_path / "by_id")
    assert data.catalog.has_image(0) and not data.catalog.has_image(1)
    assert "picture" in data.catalog.attributes
    with pytest.raises(ValueError, match="image_col"):
        load_csv(events, items, user_col="customer", item_col="sku", text_col="description")


# --- load_dataset -------------------------------------------------------------------------------


def test_load_dataset_recognises_an_atomic_folder_and_passes_options(tmp_path):
    folder = make_atomic(tmp_path / "shop")
    data = load_dataset(str(folder), split="loo")
    assert data.name == "shop" and data.catalog.image(0).shape[0] == 3
    assert data.split.test.nnz == 3 and data.split.valid.nnz == 2  # every user tests; u1 and u2 (>= 3) also validate


def test_load_dataset_unknown_specs_list_the_accepted_forms(tmp_path):
    for spec in ("no-such-dataset", str(tmp_path), str(make_atomic(tmp_path / "shop") / "shop.item")):
        with pytest.raises(ValueError, match="Accepted: 'toyshop'.*atomic format.*ML-100K posters folder"):
            load_dataset(spec)


def test_load_dataset_toyshop_spec_calls_make_with_parsed_options(monkeypatch, tmp_path):
    calls = []

    def make(**kwargs):
        calls.append(kwargs)
        return load_atomic(make_atomic(tmp_path / f"toy{len(calls)}"))

    from venomkit.data import toyshop

    monkeypatch.setattr(toyshop, "make", make)
    load_dataset("toyshop")
    load_dataset("toyshop:n_users=20,taste_weight=0.5,split=loo,seed=3", image_size=32)
    data = load_dataset("toyshop", split="loo")
    assert calls == [{}, {"n_users": 20, "taste_weight": 0.5, "split": "loo", "seed": 3, "image_size": 32}, {}]
    assert data.split.test.nnz == 3
    with pytest.raises(ValueError, match="both set n_users"):
        load_dataset("toyshop:n_users=20", n_users=30)
    with pytest.raises(ValueError, match="key=value"):
        load_dataset("toyshop:n_users")


@pytest.mark.parametrize(
    "spec, kwargs, expected",
    [
        ("toyshop:n_itemz=5", {}, "dataset spec 'toyshop:n_itemz=5': unknown option 'n_itemz'; valid options: n_users, n_items, "),
        ("toyshop", {"scale": 2}, "dataset spec 'toyshop': unknown option 'scale'; valid options: n_users, n_items, "),
        ("toyshop:n_items=abc", {}, "dataset spec 'toyshop:n_items=abc': ToyshopConfig.n_items must be an integer, got 'abc'"),
        ("toyshop:n_items=2.5", {}, "ToyshopConfig.n_items must be an integer, got 2.5"),
        ("toyshop:seed=true", {}, "ToyshopConfig.seed must be an integer, got True"),
        ("toyshop:taste_weight=strong", {}, "ToyshopConfig.taste_weight must be a number, got 'strong'"),
        ("toyshop:n_items=1", {}, "ToyshopConfig.n_items must be >= 2, got 1"),
    ],
)
def test_load_dataset_toyshop_options_are_checked_by_name_and_type(spec, kwargs, expected):
    with pytest.raises(ValueError) as info:
        load_dataset(spec, **kwargs)
    assert not isinstance(info.value, TypeError) and expected in str(info.value) and "\n" not in str(info.value)
