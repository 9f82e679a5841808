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


def test_batched_lbfgs__relative_test_scales_the_tolerance_by_the_loss():
    """A loss whose minimum is near zero (as a nearly separable probe's): the relative test goes further."""
    torch.manual_seed(1)
    B, p = 3, 8
    A = torch.randn(B, p, p, dtype=torch.float64)
    H = A @ A.transpose(1, 2) + 0.01 * torch.eye(p, dtype=torch.float64)
    b = torch.randn(B, p, dtype=torch.float64)
    minimiser = torch.linalg.solve(H, b.unsqueeze(-1)).squeeze(-1)
    floor = 1e-3 + 0.5 * (b * minimiser).sum(1)  # shifts each minimum value to 1e-3

    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hx = torch.bmm(H, x.unsqueeze(-1)).squeeze(-1)
        return 0.5 * (x * Hx).sum(1) - (b * x).sum(1) + floor, Hx - b

    x0 = torch.zeros(B, p, dtype=torch.float64)
    loose, n_loose, _ = batched_lbfgs(fun, x0, max_iter=500, tol=1e-4)
    tight, n_tight, converged = batched_lbfgs(fun, x0, max_iter=500, tol=1e-4, relative=True)
    gradient = fun(tight)[1].abs().amax(1)
    # tol * f is 1000 times tighter here; the last digits are lost to the offset (the decrease test stops it)
    assert converged.all() and (gradient <= 1e-2 * fun(loose)[1].abs().amax(1)).all()
    assert (n_tight >= n_loose).all()
    assert ((tight - minimiser).norm(dim=1) <= (loose - minimiser).norm(dim=1)).all()
