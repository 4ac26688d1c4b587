"""VBPR, AMR, MMGCN, LightGCN: formulas, gradients to raw pixels/tokens, config validation."""

from __future__ import annotations

import pytest
import torch
from victim_helpers import TinyImageEncoder, TinyTextEncoder, build

from venomkit.victims import AMRConfig, LightGCNConfig, MMGCNConfig, VBPRConfig
from venomkit.victims.graph import normalized_adjacency
from venomkit.victims.training import bpr_from_embeddings


def test_vbpr_scores_equal_the_paper_formula(tiny_dataset, encoders):
    victim = build("vbpr", tiny_dataset, *encoders, embed_dim=4, content_dim=3)
    with torch.no_grad():
        victim.item_bias.normal_()
        for layer in victim.content_bias.values():
            layer.weight.normal_()
        scores = victim.scores()
    f = victim.clean_features()
    u, i = 7, 11
    expected = (
        victim.gamma_user[u] @ victim.gamma_item[i]
        + victim.theta_user[u] @ (victim.projection["visual"].weight @ f["visual"][i] + victim.projection["text"].weight @ f["text"][i])
        + victim.item_bias[i]
        + victim.content_bias["visual"].weight[0] @ f["visual"][i]
        + victim.content_bias["text"].weight[0] @ f["text"][i]
    )
    assert torch.allclose(scores[u, i], expected, atol=1e-5)
    user_emb, item_emb = victim()
    assert user_emb.shape == (tiny_dataset.n_users, 4 + 3 + 1) and item_emb.shape == (tiny_dataset.n_items, 8)
    assert torch.all(user_emb[:, -1] == 1)


@pytest.mark.parametrize("kind", ["vbpr", "amr", "mmgcn"])
def test_gradients_reach_pixels_and_token_embeddings(kind, tiny_dataset, encoders):
    victim = build(kind, tiny_dataset, *encoders, embed_dim=4, **({"latent_dim": 6} if kind == "mmgcn" else {}))
    victim.eval()
    targets = torch.tensor([3, 20])
    images = tiny_dataset.catalog.image_batch(targets).clone().requires_grad_(True)
    texts = tiny_dataset.catalog.text_batch(targets)
    user_emb, item_emb = victim.item_representations(images, texts, targets)
    score = (user_emb[:10] @ item_emb[targets].T).sum()
    score.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    # The text path is differentiable in the token embeddings (what HotFlip-style attacks need).
    text_encoder = victim.text_encoder
    ids = text_encoder.tokenize(texts)
    emb = text_encoder.token_embedding(ids).detach().requires_grad_(True)
    rows = {"visual": victim.image_encoder(images.detach()), "text": text_encoder.forward_embeddings(emb, ids)}
    user_emb, item_emb = victim(victim.features_with(targets, rows))
    (user_emb[:10] @ item_emb[targets].T).sum().backward()
    assert emb.grad.abs().sum() > 0
    # Encoders stay frozen: nothing accumulates in them.
    assert all(p.grad is None for p in victim.image_encoder.parameters())


def test_clean_content_reproduces_clean_scores(tiny_dataset, encoders):
    for kind in ("vbpr", "mmgcn"):
        victim = build(kind, tiny_dataset, *encoders, embed_dim=4).eval()
        targets = torch.tensor([0, 5, 9])
        with torch.no_grad():
            rep = victim.item_representations(
                tiny_dataset.catalog.image_batch(targets), tiny_dataset.catalog.text_batch(targets), targets
            )
            clean = victim()
        assert torch.allclose(rep[1], clean[1], atol=1e-5) and torch.allclose(rep[0], clean[0], atol=1e-5)


def test_mmgcn_propagates_content_through_the_graph(tiny_dataset, encoders):
    victim = build("mmgcn", tiny_dataset, *encoders, embed_dim=4, latent_dim=6).eval()
    feats = {m: t.clone().requires_grad_(True) for m, t in victim.clean_features().items()}
    user_emb, _ = victim(feats)
    user_emb[0].sum().backward()
    # User 0's representation depends on the features of the items it interacted with (graph).
    neighbours = tiny_dataset.split.train.items_of(0)
    touched = feats["visual"].grad.abs().sum(1) > 0
    assert touched[neighbours].all()
    adj = victim.adjacency().to_dense()
    n_users = tiny_dataset.n_users
    assert torch.allclose(adj.sum(1)[n_users:][adj.sum(1)[n_users:] > 0], torch.tensor(1.0))


def _mmgcn_dense_reference(victim, features):
    """MMGCN's equations (module docstring) with the dense (N, N) mean adjacency, one tensor of all nodes."""
    adj = victim.adjacency().to_dense().to(victim.id_embedding.dtype)
    act = torch.nn.functional.leaky_relu
    rep = 0
    for m in victim.modalities:
        gcn = victim.gcn[m]
        x = torch.nn.functional.normalize(torch.cat([gcn.preference, gcn.mlp(features[m])]), dim=1)
        for conv, linear, combine in zip(gcn.conv, gcn.linear, gcn.combine):
            h = act(adj @ (x @ conv.weight.T))
            x_hat = act(linear(x)) + (victim.id_embedding if gcn.has_id else 0)
            x = act(combine(torch.cat([h, x_hat], 1)) if gcn.concat else combine(h) + x_hat)
        rep = rep + x
    return rep[: victim.n_users], rep[victim.n_users :]


@pytest.mark.parametrize("options", [{}, {"concat": True}, {"has_id": False, "n_layers": 3}])
def test_mmgcn_equals_dense_reference(tiny_dataset, encoders, options):
    # The forward pass keeps the bipartite graph's user and item blocks apart; the result
    # must be the paper's propagation over the whole (N, N) adjacency, values and gradients.
    victim = build("mmgcn", tiny_dataset, *encoders, embed_dim=4, latent_dim=6, **options).double()
    feats = {m: t.clone().requires_grad_(True) for m, t in victim.clean_features().items()}
    users, items = victim(feats)
    ref_users, ref_items = _mmgcn_dense_reference(victim, feats)
    assert torch.allclose(users, ref_users, atol=1e-10) and torch.allclose(items, ref_items, atol=1e-10)
    weights = torch.randn_like(users), torch.randn_like(items)
    grads = torch.autograd.grad((users * weights[0]).sum() + (items * weights[1]).sum(), list(feats.values()))
    ref = torch.autograd.grad((ref_users * weights[0]).sum() + (ref_items * weights[1]).sum(), list(feats.values()))
    assert all(torch.allclose(g, r, atol=1e-10) for g, r in zip(grads, ref))


def test_mmgcn_hessian_vector_products_equal_dense_reference(tiny_dataset, encoders):
    # UAT-MC differentiates the feature gradient once more: the block form must agree there too.
    victim = build("mmgcn", tiny_dataset, *encoders, embed_dim=4, latent_dim=6).double()
    feats = {m: t.clone().requires_grad_(True) for m, t in victim.clean_features().items()}
    users, pos, neg = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 4, 7, 1]), torch.tensor([9, 2, 0, 6])
    directions = [torch.randn_like(t) for t in feats.values()]

    def hvp(forward):
        user_emb, item_emb = forward()
        loss = bpr_from_embeddings(user_emb, item_emb, users, pos, neg)
        grads = torch.autograd.grad(loss, list(feats.values()), create_graph=True)
        return torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, directions)), list(feats.values()))

    got = hvp(lambda: victim(feats))
    expected = hvp(lambda: _mmgcn_dense_reference(victim, feats))
    assert all(e.abs().max() > 0 for e in expected)
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(got, expected))


def test_mmgcn_regulariser_is_the_authors_id_and_preference_term(tiny_dataset, encoders):
    victim = build("mmgcn", tiny_dataset, *encoders, embed_dim=4, latent_dim=6, reg_weight=0.3)
    users, pos, neg = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4]), torch.tensor([5, 6, 2])
    # The authors' loss: user_tensor repeats each user for its (pos, neg) pair, item_tensor
    # interleaves them, then an element-wise mean; plus the mean square of each preference table.
    ids = victim.id_embedding
    user_tensor = users.repeat_interleave(2)
    item_tensor = torch.stack([pos, neg]).t().reshape(-1) + tiny_dataset.n_users
    expected = (ids[user_tensor] ** 2 + ids[item_tensor] ** 2).mean()
    expected = expected + sum((victim.gcn[m].preference ** 2).mean() for m in victim.modalities)
    user_emb, item_emb = victim()
    assert torch.allclose(victim.reg_loss(users, pos, neg, user_emb, item_emb), 0.3 * expected)


def test_lightgcn_equals_dense_reference(tiny_dataset):
    victim = build("lightgcn", tiny_dataset, embed_dim=5, n_layers=2)
    user_emb, item_emb = victim()
    edges = victim.graph_edges
    n = tiny_dataset.n_users + tiny_dataset.n_items
    a = torch.zeros(n, n)
    a[edges[0], edges[1] + tiny_dataset.n_users] = 1
    a = a + a.T
    d = a.sum(1).clamp_min(1).rsqrt()
    norm = d[:, None] * a * d[None, :]
    e0 = torch.cat([victim.user_embedding, victim.item_embedding]).detach()
    e1 = norm @ e0
    e2 = norm @ e1
    mean = (e0 + e1 + e2) / 3
    assert torch.allclose(torch.cat([user_emb, item_emb]).detach(), mean, atol=1e-5)
    assert victim.modalities == ()
    with pytest.raises(ValueError, match="reads no content"):
        victim({"visual": torch.zeros(tiny_dataset.n_items, 8)})


@pytest.mark.parametrize(
    "cls, fields, field",
    [
        (VBPRConfig, {"n_users": 0, "n_items": 3, "visual_dim": 4}, "n_users"),
        (VBPRConfig, {"n_users": 2, "n_items": 3}, "visual_dim"),
        (VBPRConfig, {"n_users": 2, "n_items": 3, "visual_dim": 4, "reg_weight": -1.0}, "reg_weight"),
        (VBPRConfig, {"n_users": 2, "n_items": 3, "visual_dim": 4, "init_std": 0.0}, "init_std"),
        (AMRConfig, {"n_users": 2, "n_items": 3, "text_dim": 4}, "adv_modalities"),
        (AMRConfig, {"n_users": 2, "n_items": 3, "visual_dim": 4, "adv_eps": -0.1}, "eps"),
        (MMGCNConfig, {"n_users": 2, "n_items": 3, "visual_dim": 4, "n_layers": 0}, "n_layers"),
        (LightGCNConfig, {"n_users": 2, "n_items": 3, "visual_dim": 4}, "visual_dim"),
    ],
)
def test_configs_name_the_bad_field(cls, fields, field):
    with pytest.raises(ValueError, match=field):
        cls(**fields)


def test_encoder_width_must_match(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4)
    with pytest.raises(ValueError, match="8-d visual"):
        victim.attach_encoders(TinyImageEncoder(5))
    with pytest.raises(ValueError, match="does not read text"):
        victim.attach_encoders(text_encoder=TinyTextEncoder(8))


def test_victim_train_mode_keeps_encoders_in_eval(tiny_dataset, encoders):
    victim = build("vbpr", tiny_dataset, *encoders, embed_dim=4)
    victim.train()
    assert victim.training and not victim.image_encoder.training and not victim.text_encoder.training
    assert not any(k.startswith(("image_encoder", "text_encoder")) for k in victim.state_dict())
    assert all(p.requires_grad for p in victim.model_parameters())
    assert not any(p.requires_grad for p in victim.image_encoder.parameters())


def test_normalized_adjacency_mean_and_sym():
    edges = torch.tensor([[0, 0, 1], [0, 1, 1]])
    mean = normalized_adjacency(edges, 2, 2, "mean").to_dense()
    assert torch.allclose(mean.sum(1), torch.ones(4))
    sym = normalized_adjacency(edges, 2, 2, "sym").to_dense()
    assert torch.allclose(sym, sym.T)
    assert torch.isclose(sym[0, 2], torch.tensor(1 / (2 ** 0.5 * 1 ** 0.5)))


def test_full_sort_masks_training_items(tiny_dataset, encoders):
    victim = build("vbpr", tiny_dataset, *encoders, embed_dim=4).eval()
    train = tiny_dataset.split.train
    _, top = victim.full_sort(10, exclude=train)
    dense = train.matrix.toarray().astype(bool)
    assert not dense[torch.arange(train.n_users).unsqueeze(1), top].any()
    scores = victim.scores().masked_fill(torch.from_numpy(dense), float("-inf"))
    assert torch.equal(top[:, 0], scores.argmax(1))
