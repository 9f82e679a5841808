"""Batched L-BFGS: many independent smooth problems minimised together, in torch.

Every problem keeps its own curvature memory, step size and stopping tests, so a
batch behaves like a loop of separate L-BFGS runs while each evaluation of the
objective serves them all (one large matrix product instead of many small ones).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# objective(x (B, p)) -> (f (B,), grad (B, p)): B independent problems of p parameters
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def lbfgs_direction(g: torch.Tensor, S: torch.Tensor, Y: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """-H g for each problem, H the L-BFGS inverse Hessian in compact form (Byrd, Nocedal & Schnabel 1994).

    g (B, p); memory S, Y (B, m, p), oldest first; filled (B, m) marks slots holding a
    pair (empty slots are zero and drop out). A few batched matrix products instead of
    the 4m vector operations of the two-loop recursion: on a busy CPU each small
    operation costs about the same whatever its size.
    """
    SY = torch.bmm(S, Y.transpose(1, 2))  # (B, m, m): s_i . y_j
    YY = torch.bmm(Y, Y.transpose(1, 2))
    diag = torch.diagonal(SY, dim1=1, dim2=2)  # (B, m) s_i . y_i
    # gamma = s.y / y.y of the newest pair: the scale of the initial inverse Hessian
    newest = filled[:, -1]
    gamma = torch.where(newest, diag[:, -1] / torch.diagonal(YY, dim1=1, dim2=2)[:, -1].clamp_min(1e-30), 1.0)
    R = torch.triu(SY) + torch.diag_embed((~filled).to(g.dtype))  # empty slots: 1 on the diagonal
    gv = g.unsqueeze(-1)  # (B, p, 1)
    a = torch.bmm(S, gv)  # (B, m, 1)
    b = torch.bmm(Y, gv)
    r = torch.linalg.solve_triangular(R, a, upper=True)
    gamma3 = gamma.view(-1, 1, 1)
    t = (diag.unsqueeze(-1) * r + gamma3 * torch.bmm(YY, r)) - gamma3 * b
    u = torch.linalg.solve_triangular(R.transpose(1, 2), t, upper=False)
    Hg = gamma3 * gv + torch.bmm(S.transpose(1, 2), u) - gamma3 * torch.bmm(Y.transpose(1, 2), r)
    return -Hg.squeeze(-1)


def batched_lbfgs(
    fun: Objective,
    x: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    relative: bool = False,
    history: int = 10,
    max_backtracks: int = 30,
    c1: float = 1e-4,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise B independent smooth problems at once: fun(x (B, p)) -> (f (B,), grad (B, p)).

    Each problem has its own L-BFGS memory, step and stopping tests: the gradient test
    max |grad| <= tol (scipy's pgtol, as sklearn's lbfgs uses it), or with `relative`
    max |grad| <= tol * |f|, and a relative decrease below 64 eps three times running
    (scipy's factr as sklearn sets it). The relative test suits losses that approach
    zero near a nearly separable optimum, where a fixed tolerance stops early. The
    Armijo backtracking is pipelined: a
    problem whose trial step fails retries a shorter one at the next evaluation while
    the others move on, so every evaluation of `fun` advances every problem.
    on_step: called as on_step(problems_finished, B) after each evaluation.
    Returns x, accepted iterations (B,) and converged (B,) bool.
    """
    B, p = x.shape
    f, g = fun(x)
    S = x.new_zeros(B, history, p)
    Y = x.new_zeros(B, history, p)
    filled = torch.zeros(B, history, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(B, dtype=torch.long, device=x.device)
    backtracks = torch.zeros(B, dtype=torch.long, device=x.device)
    def small_gradient(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return g.abs().amax(1) <= (tol * f.abs() if relative else tol)

    converged = small_gradient(f, g)
    active = ~converged
    direction = -g
    step = torch.ones(B, dtype=x.dtype, device=x.device)
    slope = (g * direction).sum(1)
    stalled = torch.zeros(B, dtype=torch.long, device=x.device)
    ftol = 64 * torch.finfo(x.dtype).eps  # scipy's factr test as sklearn sets it, in this precision
    n_eval = 0
    while bool(active.any()) and n_eval < 3 * max_iter:
        trial = torch.addcmul(x, (step * active).unsqueeze(1), direction)
        f_new, g_new = fun(trial)
        n_eval += 1
        ok = active & (f_new <= f + c1 * step * slope)  # NaN/inf fail
        # accepted steps: keep the pair where the curvature s.y stays positive
        s, y = trial - x, g_new - g
        sy = (s * y).sum(1)
        good = ok & (sy > 1e-10 * s.norm(dim=1) * y.norm(dim=1))
        if bool(good.any()):
            keep = good.view(B, 1, 1)
            S = torch.where(keep, torch.cat([S[:, 1:], s.unsqueeze(1)], 1), S)
            Y = torch.where(keep, torch.cat([Y[:, 1:], y.unsqueeze(1)], 1), Y)
            filled = torch.where(good.view(B, 1), torch.cat([filled[:, 1:], good.view(B, 1)], 1), filled)
        tiny = (f - f_new) <= ftol * torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
        stalled = torch.where(ok, torch.where(tiny, stalled + 1, 0), stalled)
        x = torch.where(ok.unsqueeze(1), trial, x)
        f = torch.where(ok, f_new, f)
        g = torch.where(ok.unsqueeze(1), g_new, g)
        n_iter += ok.long()
        # converged: the gradient test, or no decrease left in this precision (scipy's factr test)
        converged |= ok & (small_gradient(f, g) | (stalled >= 3))
        # failed steps: shrink by safeguarded quadratic interpolation
        failed = active & ~ok
        backtracks = torch.where(failed, backtracks + 1, 0)
        curvature = 2 * (f_new - f - slope * step)
        shorter = torch.where(curvature > 0, -slope * step * step / curvature.clamp_min(1e-30), 0.5 * step)
        shorter = torch.minimum(torch.maximum(shorter, 0.1 * step), 0.5 * step)
        # a problem that cannot descend any more is at the limit of the arithmetic: stop it
        active = active & ~converged & (n_iter < max_iter) & (backtracks <= max_backtracks)
        if bool(ok.any()):
            new_direction = lbfgs_direction(g, S, Y, filled)
            new_slope = (g * new_direction).sum(1)
            reset = ok & ~(new_slope < 0)
            if bool(reset.any()):  # memory went bad: restart from steepest descent
                filled = filled & ~reset.view(B, 1)
                S = torch.where(reset.view(B, 1, 1), 0.0, S)
                Y = torch.where(reset.view(B, 1, 1), 0.0, Y)
                new_direction = torch.where(reset.unsqueeze(1), -g, new_direction)
                new_slope = (g * new_direction).sum(1)
            direction = torch.where(ok.unsqueeze(1), new_direction, direction)
            slope = torch.where(ok, new_slope, slope)
        step = torch.where(ok, 1.0, torch.where(failed, shorter, step))
        if on_step is not None:
            on_step(int((~active).sum()), B)
    return x, n_iter, converged
