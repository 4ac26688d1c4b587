"""toyshop: determinism, image content, texts, long tail, and content explaining cold items."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from venomkit.data import toyshop
from venomkit.data.interactions import cold_items

ATTRIBUTE_KEYS = ("category", "colour", "pattern", "material", "title", "brand")


@pytest.fixture(scope="module")
def shop():
    """The default shop (1,000 users x 600 items) with small images to keep the test quick."""
    return toyshop.make(image_size=32, seed=0)


@pytest.fixture(scope="module")
def small():
    return toyshop.make(n_users=60, n_items=40, image_size=32, seed=3, interactions_per_user=12)


def _silhouette(img: torch.Tensor) -> torch.Tensor:
    """Foreground mask: pixels far from the row's background (estimated at the image sides)."""
    side = torch.cat([img[:, :, :2], img[:, :, -2:]], dim=2).median(dim=2).values  # (3, H)
    return ((img - side[:, :, None]).abs().amax(dim=0) > 0.15).float()


# ------------------------------------------------------------------ determinism and shapes


def test_same_seed_gives_identical_dataset(small):
    again = toyshop.make(n_users=60, n_items=40, image_size=32, seed=3, interactions_per_user=12)
    assert again.catalog.texts == small.catalog.texts
    assert again.catalog.attributes == small.catalog.attributes
    assert torch.equal(again.catalog.image_batch(range(40)), small.catalog.image_batch(range(40)))
    assert (again.interactions.matrix != small.interactions.matrix).nnz == 0
    assert np.array_equal(again.interactions.timestamps.data, small.interactions.timestamps.data)
    assert (again.split.test.matrix != small.split.test.matrix).nnz == 0


def test_other_seed_gives_other_dataset(small):
    other = toyshop.make(n_users=60, n_items=40, image_size=32, seed=4, interactions_per_user=12)
    assert other.catalog.texts != small.catalog.texts
    assert not torch.equal(other.catalog.image(0), small.catalog.image(0))
    assert (other.interactions.matrix != small.interactions.matrix).nnz > 0


def test_dataset_structure(shop):
    assert shop.name == "toyshop"
    assert (shop.n_users, shop.n_items) == (1000, 600)
    cat = shop.catalog
    assert set(ATTRIBUTE_KEYS) <= set(cat.attributes)
    for key in ATTRIBUTE_KEYS:
        assert len(cat.attributes[key]) == 600 and all(isinstance(v, str) and v for v in cat.attributes[key])
    assert set(cat.attributes["category"]) == set(toyshop.CATEGORIES)
    assert set(cat.attributes["colour"]) == set(toyshop.COLOURS)
    assert set(cat.attributes["pattern"]) == set(toyshop.PATTERNS)
    assert set(cat.attributes["material"]) <= set(toyshop.MATERIALS)
    for c, m in zip(cat.attributes["category"], cat.attributes["material"]):
        assert m in toyshop.CATEGORY_MATERIALS[c]
    assert len(set(cat.item_ids)) == 600 and len(set(shop.user_ids)) == 1000
    assert shop.interactions.timestamps is not None
    per_user = shop.interactions.nnz / shop.n_users
    assert 20 <= per_user <= 40
    assert shop.interactions.user_degree().min() >= 5


def test_images_are_float_in_unit_range(shop):
    batch = shop.catalog.image_batch(range(0, 600, 7))
    assert batch.shape == (len(range(0, 600, 7)), 3, 32, 32)
    assert batch.dtype == torch.float32
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    # Light backgrounds: the image corners are bright.
    assert float(batch[:, :, 0, 0].mean()) > 0.8


@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_render_item_sizes(size):
    img = toyshop.render_item("mug", "blue", "striped", "ceramic", size, np.random.default_rng(0))
    assert img.shape == (3, size, size) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_render_item_is_resolution_independent():
    """The same seed at two sizes is the same picture (so 64 px and 256 px catalogs agree)."""
    small = toyshop.render_item("umbrella", "red", "polka-dot", "plastic", 64, 5)
    large = toyshop.render_item("umbrella", "red", "polka-dot", "plastic", 128, 5)
    down = torch.nn.functional.interpolate(large[None], size=(64, 64), mode="area")[0]
    assert float((down - small).abs().mean()) < 0.03


def test_render_item_deterministic_and_varied():
    a = toyshop.render_item("hat", "green", "checked", "wool", 48, np.random.default_rng(7))
    b = toyshop.render_item("hat", "green", "checked", "wool", 48, np.random.default_rng(7))
    c = toyshop.render_item("hat", "green", "checked", "wool", 48, np.random.default_rng(8))
    assert torch.equal(a, b)
    assert float((a - c).abs().mean()) > 0.01  # same attributes, another item: not pixel-identical


def test_render_item_rejects_bad_arguments():
    with pytest.raises(ValueError, match="category 'sofa'"):
        toyshop.render_item("sofa", "red", "plain", "wood", 64)
    with pytest.raises(ValueError, match="colour 'teal'"):
        toyshop.render_item("chair", "teal", "plain", "wood", 64)
    with pytest.raises(ValueError, match="pattern"):
        toyshop.render_item("chair", "red", "tartan", "wood", 64)
    with pytest.raises(ValueError, match="material"):
        toyshop.render_item("chair", "red", "plain", "marble", 64)
    for size in (31, 257):
        with pytest.raises(ValueError, match=r"size must be an integer in \[32, 256\]"):
            toyshop.render_item("chair", "red", "plain", "wood", size)


# ------------------------------------------------------------------ image content


def test_categories_have_distinct_silhouettes():
    """Foreground masks alone identify the category: 1-nearest-neighbour over masks of other
    items (mirrored too, since some products face either way) is right far above chance."""
    rng = np.random.default_rng(0)
    colours, patterns = list(toyshop.COLOURS), toyshop.PATTERNS
    reference, labels, queries = [], [], []
    for c, cat in enumerate(toyshop.CATEGORIES):
        materials = toyshop.CATEGORY_MATERIALS[cat]
        masks = [
            _silhouette(toyshop.render_item(cat, colours[k % 8], patterns[k % 5], materials[k % len(materials)], 32, rng))
            for k in range(11)
        ]
        # Each silhouette covers a plausible share of the frame: an object, not the background.
        assert 0.08 < float(torch.stack(masks).mean()) < 0.6, cat
        reference += masks[:8]
        labels += [c] * 8
        queries += [(m, c) for m in masks[8:]]
    bank = torch.stack(reference)
    bank = torch.cat([bank, bank.flip(-1)])
    labels = labels + labels
    correct = sum(labels[int((bank - m).abs().mean((1, 2)).argmin())] == c for m, c in queries)
    assert correct / len(queries) >= 0.9, correct / len(queries)


def test_images_are_smooth_not_noise(shop):
    """Neighbouring pixels are strongly correlated (drawn shapes), unlike noise."""
    batch = shop.catalog.image_batch(range(0, 600, 11))
    x = batch[..., :-1].reshape(-1)
    y = batch[..., 1:].reshape(-1)
    corr = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    assert corr > 0.8


def test_colour_shows_in_the_image():
    """The dominant foreground hue of a plain item is close to its named colour."""
    rng = np.random.default_rng(1)
    for name, rgb in toyshop.COLOURS.items():
        img = toyshop.render_item("t-shirt", name, "plain", "cotton", 32, rng)
        centre = img[:, 12:20, 12:20].reshape(3, -1).median(dim=1).values
        target = torch.tensor(rgb, dtype=torch.float32) / 255
        nearest = min(toyshop.COLOURS, key=lambda n: float((torch.tensor(toyshop.COLOURS[n]) / 255 - centre).norm()))
        assert nearest == name, (name, centre, target)


def test_contact_sheet(shop):
    sheet = toyshop.contact_sheet(shop.catalog, range(10), ncol=4, pad=2)
    assert sheet.shape == (3, 2 + 3 * 34, 2 + 4 * 34)
    assert torch.equal(sheet[:, 2:34, 2:34], shop.catalog.image(0))


# ------------------------------------------------------------------ texts


def test_texts_name_category_colour_pattern_material(shop):
    cat = shop.catalog
    for i, text in enumerate(cat.texts):
        lowered = text.lower()
        for key in ("category", "colour", "material"):
            assert cat.attributes[key][i] in lowered, (key, text)
        pattern = cat.attributes["pattern"][i]
        assert pattern in lowered or (pattern == "plain" and "solid" in lowered), text
        assert cat.attributes["brand"][i] in text
    assert len(set(cat.texts)) == len(cat.texts)  # varied templates, no duplicates
    openings = {t.split(" ")[0] for t in cat.texts}
    assert len(openings) > 10


def test_titles_and_captions():
    assert toyshop.make_title("t-shirt", "blue", "striped", "cotton") == "Blue striped cotton t-shirt"
    assert toyshop.make_title("mug", "red", "plain", "ceramic") == "Plain red ceramic mug"
    attrs = {"category": "umbrella", "colour": "orange", "pattern": "zigzag", "material": "plastic"}
    assert toyshop.caption(attrs) == "a photo of a zigzag orange plastic umbrella"
    assert toyshop.caption({**attrs, "pattern": "plain"}) == "a photo of a plain orange plastic umbrella"
    with pytest.raises(ValueError, match="'material'"):
        toyshop.caption({"category": "mug", "colour": "red", "pattern": "plain"})


def test_item_attributes_feed_caption(shop):
    attrs = toyshop.item_attributes(shop.catalog, 3)
    text = toyshop.caption(attrs)
    assert attrs["category"] in text and attrs["colour"] in text


# ------------------------------------------------------------------ interactions


def test_long_tail(shop):
    train_pop = shop.split.train.popularity()
    assert len(cold_items(shop.split.train, 5)) >= 0.2 * shop.n_items
    pop = np.sort(shop.interactions.popularity())[::-1]
    top_share = pop[: len(pop) // 10].sum() / pop.sum()
    assert top_share > 0.35  # uniform would be 0.10
    n = len(pop)
    asc = pop[::-1]
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ asc / (n * asc.sum()))
    assert gini > 0.45
    assert train_pop.max() < shop.n_users  # a head, but no item everyone bought
    # Cold items still get test interactions (so cold-item recall can be measured).
    test_pop = shop.split.test.popularity()
    assert test_pop[train_pop <= 5].sum() >= 30


def test_content_beats_popularity_on_cold_items(shop):
    """A trivial content scorer (user profile over attribute one-hots) finds cold test items;
    popularity (the best an ID-only model can do for an item it has barely seen) does not."""
    train = shop.split.train.matrix.toarray()
    test = shop.split.test.matrix.toarray() > 0
    pop = train.sum(0)
    onehots = toyshop.attribute_onehots(shop.catalog.attributes)
    profile = train @ onehots / np.maximum(train.sum(1, keepdims=True), 1)
    mean_item = (pop[:, None] * onehots).sum(0) / pop.sum()
    scores = {"content": (profile - mean_item) @ onehots.T, "popularity": np.tile(pop, (len(train), 1)).astype(float)}
    cold = pop <= 5
    recall = {}
    for name, s in scores.items():
        s = s + 1e-6 * np.random.default_rng(0).random(s.shape)  # break popularity ties at random
        s[train > 0] = -np.inf
        top = np.argpartition(-s, 20, axis=1)[:, :20]
        hit = np.zeros_like(test)
        np.put_along_axis(hit, top, True, axis=1)
        target = test & cold[None, :]
        recall[name] = (hit & target).sum() / target.sum()
    assert recall["content"] > 0.3 and recall["content"] > recall["popularity"] + 0.25, recall


def test_leave_one_out_holds_out_latest_interaction(small):
    loo = toyshop.make(n_users=60, n_items=40, image_size=32, seed=3, interactions_per_user=12, split="loo")
    ts = loo.interactions.timestamps
    for u in range(loo.n_users):
        held = loo.split.test.items_of(u)
        assert len(held) == 1
        row = slice(ts.indptr[u], ts.indptr[u + 1])
        latest = ts.indices[row][np.argmax(ts.data[row])]
        assert held[0] == latest


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="image_size"):
        toyshop.make(n_users=5, n_items=5, image_size=16)
    with pytest.raises(ValueError, match="n_items"):
        toyshop.make(n_users=5, n_items=1)
    with pytest.raises(ValueError, match="zipf_exponent"):
        toyshop.make(n_users=5, n_items=5, zipf_exponent=-1)
    with pytest.raises(ValueError, match="split"):
        toyshop.make(n_users=5, n_items=5, split="random")
    with pytest.raises(ValueError, match="unknown option 'colour_count'; valid options: n_users, n_items"):
        toyshop.make(n_users=5, n_items=5, colour_count=3)
    with pytest.raises(ValueError, match="n_users must be an integer, got '5'"):
        toyshop.make(n_users="5", n_items=5)


def test_tiny_catalog_still_works():
    ds = toyshop.make(n_users=4, n_items=3, image_size=32, interactions_per_user=2)
    assert ds.interactions.user_degree().max() <= 3 and ds.interactions.nnz > 0


# ------------------------------------------------------------------ CLI


def test_cli_writes_atomic_folder_that_loads_back(tmp_path, capsys):
    loaders = pytest.importorskip("venomkit.data.loaders")
    parser = toyshop.add_toyshop_arguments(argparse.ArgumentParser())
    out = tmp_path / "shop"
    args = parser.parse_args(["--out", str(out), "--users", "30", "--items", "20", "--image-size", "32", "--seed", "2"])
    assert toyshop.cli_toyshop(args) == 0
    assert "30 users x 20 items" in capsys.readouterr().out
    assert (out / "toyshop.inter").is_file() and (out / "toyshop.item").is_file()
    assert len(list((out / "images").glob("*.png"))) == 20
    made = toyshop.make(n_users=30, n_items=20, image_size=32, seed=2)
    loaded = loaders.load_atomic(out)
    assert loaded.catalog.n_items == 20 and loaded.interactions.nnz == made.interactions.nnz
    for i in (0, 7, 19):
        j = loaded.catalog.index_of(made.catalog.item_ids[i])
        # PNG is lossless and toyshop images are already 8-bit values: the round trip is exact.
        assert torch.equal(loaded.catalog.image(j), made.catalog.image(i))
        assert loaded.catalog.texts[j] == made.catalog.texts[i]
        for key in ATTRIBUTE_KEYS:
            assert loaded.catalog.attributes[key][j] == made.catalog.attributes[key][i]


# ------------------------------------------------------------------ the hidden preference model
def test_preference_model_is_the_one_that_drew_the_interactions(shop):
    """preference_model(**options) rebuilds make(**options)'s hidden model without rendering:
    the items users bought score higher under it than those they did not, its popularity term
    orders items like the training counts, and its logits rank the held-out items far better
    than chance (the oracle a recommender is measured against)."""
    model = toyshop.preference_model(image_size=32, seed=0)
    assert model.tastes.shape == (1000, 31) and model.features.shape == (600, 31) and model.log_prior.shape == (600,)
    logits = model.logits()
    bought = shop.interactions.matrix.toarray() > 0
    assert logits[bought].mean() > logits[~bought].mean() + 2.0
    counts = np.asarray(shop.split.train.popularity(), dtype=float)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(model.log_prior), rank(counts))[0, 1] > 0.8
    # Another seed is another model.
    other = toyshop.preference_model(image_size=32, seed=1)
    assert not np.allclose(other.log_prior, model.log_prior)
    assert np.allclose(model.logits(np.array([3, 5])), logits[[3, 5]])
    with pytest.raises(ValueError, match="preference_model: unknown option 'n_itemz'"):
        toyshop.preference_model(n_itemz=5)
