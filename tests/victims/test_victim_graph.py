"""The bipartite graph of graph victims: normalisation and the CSR propagation operator."""

from __future__ import annotations

import pytest
import torch

from venomkit.victims.graph import BipartitePropagation, Propagation, normalized_adjacency


def _graph():
    edges = torch.tensor([[0, 0, 1, 2, 2, 3], [0, 1, 1, 2, 0, 1]])
    return normalized_adjacency(edges, 4, 3, "mean")


def test_propagation_equals_the_dense_product_in_every_dtype():
    adj = _graph()
    propagate = Propagation(adj)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(7, 5, dtype=dtype)
        expected = adj.to_dense().to(dtype) @ x
        out = propagate(x)
        assert out.dtype == dtype
        assert torch.allclose(out, expected, atol=1e-6)


def test_propagation_is_differentiable_twice():
    # UAT-MC's alignment term backpropagates through the backward pass of the propagation.
    propagate = Propagation(_graph())
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(propagate, (x,))
    assert torch.autograd.gradgradcheck(lambda t: propagate(t).tanh(), (x,))
    # The backward is A^T (mean normalisation is not symmetric): check against the dense VJP.
    grad_out = torch.randn(7, 3, dtype=torch.float64)
    (g,) = torch.autograd.grad(propagate(x), x, grad_out)
    assert torch.allclose(g, _graph().to_dense().double().T @ grad_out)


def test_propagation_rejects_wrong_shapes():
    propagate = Propagation(_graph())
    with pytest.raises(ValueError, match=r"\(7, d\)"):
        propagate(torch.randn(6, 3))
    with pytest.raises(ValueError, match="2-D sparse"):
        Propagation(torch.eye(3))


def test_bipartite_propagation_is_the_adjacency_product_in_blocks():
    adj = _graph()
    propagate = BipartitePropagation(adj, n_users=4)
    users, items = torch.randn(4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    expected = adj.to_dense().double() @ torch.cat([users, items])
    out_users, out_items = propagate(users, items)
    assert torch.allclose(out_users, expected[:4]) and torch.allclose(out_items, expected[4:])
    # Rectangular blocks keep the any-order differentiability of the square product.
    assert torch.autograd.gradgradcheck(lambda i: propagate.users_from_items(i).tanh(), (items.requires_grad_(True),))


def test_bipartite_propagation_rejects_a_graph_with_same_side_edges():
    adj = (_graph() + torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.tensor([1.0]), (7, 7), check_invariants=True)).coalesce()
    with pytest.raises(ValueError, match="user-user or item-item"):
        BipartitePropagation(adj, n_users=4)
    with pytest.raises(ValueError, match="square sparse"):
        BipartitePropagation(torch.eye(7), n_users=4)
