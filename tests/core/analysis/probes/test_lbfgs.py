"""The batched L-BFGS on problems with known minimisers, independent of any probe."""

from __future__ import annotations

import torch

from core.analysis.probes.lbfgs import batched_lbfgs


def test_batched_lbfgs__each_quadratic_reaches_its_own_minimiser():
    torch.manual_seed(0)
    B, p = 4, 6
    A = torch.randn(B, p, p, dtype=torch.float64)
    H = A @ A.transpose(1, 2) + torch.diag_embed(torch.tensor([0.1, 1.0, 10.0, 100.0]).view(B, 1).expand(B, p))
    b = torch.randn(B, p, dtype=torch.float64)

    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hx = torch.bmm(H, x.unsqueeze(-1)).squeeze(-1)
        return 0.5 * (x * Hx).sum(1) - (b * x).sum(1), Hx - b

    x, n_iter, converged = batched_lbfgs(fun, torch.zeros(B, p, dtype=torch.float64), max_iter=500, tol=1e-10)
    expected = torch.linalg.solve(H, b.unsqueeze(-1)).squeeze(-1)
    assert converged.all() and (n_iter > 0).all()
    torch.testing.assert_close(x, expected, atol=1e-8, rtol=1e-7)


def test_batched_lbfgs__a_problem_at_its_minimum_stops_at_once():
    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = torch.tensor([[0.0, 0.0], [3.0, -1.0]], dtype=torch.float64)
        return ((x - target) ** 2).sum(1), 2 * (x - target)

    x, n_iter, converged = batched_lbfgs(fun, torch.zeros(2, 2, dtype=torch.float64), max_iter=100, tol=1e-9)
    assert converged.all() and n_iter.tolist()[0] == 0 and n_iter.tolist()[1] >= 1
    torch.testing.assert_close(x[1], torch.tensor([3.0, -1.0], dtype=torch.float64))
