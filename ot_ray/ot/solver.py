"""Batched entropic optimal transport: a log-domain Sinkhorn kernel with envelope gradients.

Problem solved for each batch element (GeomLoss's and POT's ``reg_type="KL"`` convention)::

    OT_eps(a, b) = min_P <P, C> + eps * KL(P | a x b)                      (tau is None)
                          + tau * KL(P 1 | a) + tau * KL(P^T 1 | b)         (unbalanced)

with KL the generalised Kullback-Leibler divergence. Padded positions carry zero mass.

Why a kernel of our own: this loss runs once per training step on every sentence pair, so it must
be batched (no Python loop over pairs), stable in float32 for small eps (log domain), cheap in
memory (no autograd through the iterations) and free of per-iteration host synchronisation. The
potentials are computed without autograd; the value is then the dual objective evaluated at those
potentials, whose derivative with respect to the cost is exactly the transport plan (envelope
theorem), so backward costs one pass over ``(B, n, m)`` whatever the iteration count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

from ot_ray.config import SinkhornConfig

# exp() argument cap in the convergence check: far beyond any tolerance, far below overflow.
_MAX_LOG_RATIO = 30.0
# Floor on exp() arguments inside the log-sum-exp, after the max is subtracted. exp(-80) ~ 2e-35
# is below float64's relative precision even when summed over 10^15 terms, and keeping arguments
# above float32's underflow point (-87) avoids the CPU's denormal slow path: the kernel's hot loop
# runs ~8x faster on it (measured with benchmarks/bench_ot.py on an AVX-512 CPU).
_LSE_FLOOR = -80.0


@dataclass
class OTResult:
    """Solutions of a batch of entropic OT problems.

    ``value`` (B,) carries gradients with respect to the cost; ``plan`` (B, n, m) and the dual
    potentials ``f`` (B, n), ``g`` (B, m) are detached (zero at padded positions). ``empty`` (B,)
    marks problems where a side had no mass: their value, plan and potentials are zero.
    ``marginal_error`` is what ``tol`` was checked on at the last check (None when a fixed
    iteration count was used and no check ran): balanced, the L1 violation of the row marginals;
    with ``tau``, whose plan leaves the marginals by design, the residual of the damped update,
    ``sum a |exp((f_old - f_new) / eps) - 1|``. The fused backend stops each problem
    on its own: there ``n_iters`` is the most any problem ran and the error the worst problem's.
    """

    value: Tensor
    plan: Tensor
    f: Tensor
    g: Tensor
    empty: Tensor
    n_iters: int
    marginal_error: float | None

    @property
    def potentials(self) -> tuple[Tensor, Tensor]:
        return self.f, self.g


@dataclass
class SolverLog:
    """What the Sinkhorn calls made inside :func:`record_solver` took: the most sweeps at the
    target eps and the worst final marginal error (None when every call ran a fixed count).

    Why: at the paper's eps, annealed with the default factor 0.5, the cross problems of encoder
    states do not reach the tolerance and every call runs ``max_iters``; this shows it in a run's
    metrics instead of hiding it.
    """

    calls: int = 0
    sweeps: int = 0
    marginal_error: float | None = None

    def add(self, sweeps: int, marginal_error: float | None) -> None:
        self.calls += 1
        self.sweeps = max(self.sweeps, sweeps)
        if marginal_error is not None:
            worst = self.marginal_error if self.marginal_error is not None else 0.0
            self.marginal_error = max(worst, marginal_error)


_SOLVER_LOG: ContextVar[SolverLog | None] = ContextVar("ot_ray_solver_log", default=None)


@contextmanager
def record_solver() -> Iterator[SolverLog]:
    """Collect the sweeps and marginal errors of every :func:`entropic_ot` call in the block
    (no extra host synchronisation: both numbers are on the host already)."""
    log = SolverLog()
    token = _SOLVER_LOG.set(log)
    try:
        yield log
    finally:
        _SOLVER_LOG.reset(token)


def entropic_ot(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    epsilon: float,
    *,
    tau: float | None = None,
    options: SinkhornConfig | None = None,
    symmetric: bool = False,
) -> OTResult:
    """Solve ``B`` entropic OT problems at once; see the module docstring for the objective.

    ``cost`` (B, n, m) may require grad; ``a`` (B, n) and ``b`` (B, m) are nonnegative masses
    (zeros mark padding) and are treated as constants. ``symmetric=True`` promises
    ``cost[k] == cost[k].T`` and ``a == b`` (the OT(a, a) terms of a divergence) and lets the
    native kernel use the faster, non-oscillating symmetric update. Computation happens in
    float32, or float64 when ``cost`` is float64, whatever the input dtype (bfloat16 included).
    """
    options = options or SinkhornConfig()
    _check_problem(cost, a, b, epsilon, tau)
    if symmetric and (cost.shape[1] != cost.shape[2] or not torch.equal(a, b)):
        raise ValueError("symmetric=True needs square costs and identical masses a == b")
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    cost = cost.to(dtype)
    a = a.detach().to(dtype)
    b = b.detach().to(dtype)

    rows, cols = a > 0, b > 0
    empty = ~(rows.any(dim=1) & cols.any(dim=1))
    # An empty problem is replaced by a trivial 1x1 problem at zero cost, so the solver never sees
    # an all-(-inf) log-sum-exp; its outputs are zeroed below.
    a = torch.where(empty[:, None], _one_hot_first(a), a)
    b = torch.where(empty[:, None], _one_hot_first(b), b)
    valid = (a > 0)[:, :, None] & (b > 0)[:, None, :] & ~empty[:, None, None]
    cost = torch.where(valid, cost, torch.zeros((), dtype=dtype, device=cost.device))
    log_a, log_b = _safe_log(a), _safe_log(b)

    with torch.no_grad():
        backend = resolve_backend(options.backend, cost)
        if backend == "native":
            f, g, n_iters, error = _sinkhorn(
                cost.detach(), log_a, log_b, epsilon, tau, options, symmetric
            )
        elif backend == "fused":
            from ot_ray.ot.fused_sinkhorn import fused_potentials

            schedule = _annealing_schedule(cost, epsilon, options.eps_scaling)
            f, g, n_iters, error = fused_potentials(
                cost.detach(), log_a, log_b, epsilon, tau, options, schedule, symmetric
            )
        else:
            from ot_ray.ot.pot_backend import pot_potentials

            f, g, n_iters, error = pot_potentials(cost.detach(), a, b, epsilon, tau, options)

    log = _SOLVER_LOG.get()
    if log is not None:
        log.add(n_iters, error)
    value, plan = dual_value(cost, a, b, log_a, log_b, f, g, epsilon, tau)
    zero = torch.zeros((), dtype=dtype, device=cost.device)
    return OTResult(
        value=torch.where(empty, zero, value),
        plan=torch.where(empty[:, None, None], zero, plan),
        f=torch.where(rows & ~empty[:, None], f, zero),
        g=torch.where(cols & ~empty[:, None], g, zero),
        empty=empty,
        n_iters=n_iters,
        marginal_error=error,
    )


def dual_value(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    f: Tensor,
    g: Tensor,
    epsilon: float,
    tau: float | None,
) -> tuple[Tensor, Tensor]:
    """The dual objective at fixed potentials, and the (detached) plan they define.

    At the optimum it equals OT_eps, and its error is second order in the potentials' error. Its
    gradient with respect to ``cost`` is the plan for any ``f, g`` (the envelope theorem made
    exact), which :class:`_DualValue` returns directly instead of back-propagating through the
    exp: one multiply over (B, n, m) in backward.
    """
    return _DualValue.apply(cost, a, b, log_a, log_b, f, g, epsilon, tau)


class _DualValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, a, b, log_a, log_b, f, g, epsilon, tau):  # type: ignore[override]
        log_plan = (f[:, :, None] + g[:, None, :] - cost).div_(epsilon)
        plan = log_plan.add_(log_a[:, :, None]).add_(log_b[:, None, :]).exp_()
        excess_mass = plan.sum(dim=(1, 2)) - a.sum(dim=1) * b.sum(dim=1)
        if tau is None:
            linear = (a * f).sum(dim=1) + (b * g).sum(dim=1)
        else:
            # padded positions (mass 0) are left out, not multiplied by 0: their potentials
            # see zeroed costs, so -f / tau reaches hundreds where costs are large against tau,
            # and 0 * expm1(inf) was NaN for every padded pair
            zero = torch.zeros((), dtype=f.dtype, device=f.device)
            linear = -tau * (
                torch.where(a > 0, a * torch.expm1(-f / tau), zero).sum(1)
                + torch.where(b > 0, b * torch.expm1(-g / tau), zero).sum(1)
            )
        ctx.save_for_backward(plan)
        ctx.mark_non_differentiable(plan)
        return linear - epsilon * excess_mass, plan

    @staticmethod
    def backward(ctx, grad_value, _grad_plan):  # type: ignore[override]
        (plan,) = ctx.saved_tensors
        grad_cost = plan * grad_value[:, None, None] if ctx.needs_input_grad[0] else None
        return grad_cost, None, None, None, None, None, None, None, None


def _sinkhorn(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    epsilon: float,
    tau: float | None,
    options: SinkhornConfig,
    symmetric: bool = False,
) -> tuple[Tensor, Tensor, int, float | None]:
    """Log-domain Sinkhorn with optional eps-annealing.

    General problems use alternating updates, the last one on ``g`` so column marginals are
    exact. Symmetric problems (OT(a, a), the debiasing terms) have one potential and use the
    averaged update f <- (f + softmin(f)) / 2, which does not oscillate as alternating updates do
    on them, on half the work per sweep.

    With ``n_iters`` set the loop never synchronises with the host (one ``.item()`` at the start
    when annealing needs the cost range); otherwise convergence is checked every ``check_every``
    sweeps, for free: the row-marginal error of the current iterate is read off the next update.
    """
    if symmetric:
        return _symmetric_sinkhorn(cost, log_a, epsilon, tau, options)
    cost_t = cost.transpose(1, 2).contiguous()
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)

    def sweep(f: Tensor, g: Tensor, eps: float, neg_c: Tensor, neg_ct: Tensor):
        damping = _damping(eps, tau)
        f_new = damping * _softmin(neg_c, log_b, g, eps)
        g_new = damping * _softmin(neg_ct, log_a, f_new, eps)
        return f_new, g_new, f_new

    for eps in _annealing_schedule(cost, epsilon, options.eps_scaling):
        f, g, _ = sweep(f, g, eps, cost * (-1.0 / eps), cost_t * (-1.0 / eps))

    # At the target temperature the scaled costs are computed once: the loop body is then a
    # broadcast add and a log-sum-exp per half-sweep.
    neg_c, neg_ct = cost * (-1.0 / epsilon), cost_t * (-1.0 / epsilon)
    f, g, n_iters, error = _iterate(
        lambda f, g: sweep(f, g, epsilon, neg_c, neg_ct), f, g, log_a, epsilon, options
    )
    return f, g, n_iters, error


def _symmetric_sinkhorn(
    cost: Tensor, log_a: Tensor, epsilon: float, tau: float | None, options: SinkhornConfig
) -> tuple[Tensor, Tensor, int, float | None]:
    f = torch.zeros_like(log_a)

    def sweep(f: Tensor, eps: float, neg_c: Tensor):
        update = _damping(eps, tau) * _softmin(neg_c, log_a, f, eps)
        return 0.5 * (f + update), update

    for eps in _annealing_schedule(cost, epsilon, options.eps_scaling):
        f, _ = sweep(f, eps, cost * (-1.0 / eps))
    neg_c = cost * (-1.0 / epsilon)

    def step(f: Tensor, _g: Tensor):
        f_new, update = sweep(f, epsilon, neg_c)
        return f_new, f_new, update

    f, _, n_iters, error = _iterate(step, f, f, log_a, epsilon, options)
    return f, f, n_iters, error


def _iterate(step, f: Tensor, g: Tensor, log_a: Tensor, epsilon: float, options: SinkhornConfig):
    """Run ``step`` (f, g) -> (f, g, f-update) for a fixed count or until the row marginals
    of the iterate are within ``tol`` (L1, worst problem), checked every ``check_every`` steps."""
    if options.n_iters is not None:
        for _ in range(options.n_iters):
            f, g, _ = step(f, g)
        return f, g, options.n_iters, None
    a = log_a.exp()
    error = math.inf
    n_iters = 0
    while n_iters < options.max_iters:
        f_old = f
        f, g, update = step(f, g)
        n_iters += 1
        if n_iters % options.check_every == 0 or n_iters == options.max_iters:
            error = _row_marginal_error(a, f_old, update, epsilon)
            if error < options.tol:
                break
    return f, g, n_iters, error


def resolve_backend(name: str, cost: Tensor) -> str:
    """``auto``: the fused kernel for CUDA problems it can hold, the torch loop otherwise."""
    if name != "auto":
        return name
    if not cost.is_cuda:
        return "native"
    from ot_ray.ot.fused_sinkhorn import fused_available

    return "fused" if fused_available(cost) else "native"


def _damping(eps: float, tau: float | None) -> float:
    """Unbalanced updates are the balanced ones shrunk by tau / (tau + eps)."""
    return 1.0 if tau is None else 1.0 / (1.0 + eps / tau)


def _softmin(neg_cost_over_eps: Tensor, log_w: Tensor, potential: Tensor, eps: float) -> Tensor:
    """``-eps * log sum_j w_j exp((potential_j - cost_ij) / eps)`` from the pre-scaled cost."""
    return -eps * _logsumexp(neg_cost_over_eps + (log_w + potential / eps)[:, None, :])


def _logsumexp(values: Tensor) -> Tensor:
    """Log-sum-exp over the last dimension, overwriting ``values``; see ``_LSE_FLOOR``."""
    peak = values.amax(dim=-1, keepdim=True)
    values.sub_(peak).clamp_(min=_LSE_FLOOR).exp_()
    return peak.squeeze(-1) + values.sum(dim=-1).log()


def _row_marginal_error(a: Tensor, f_old: Tensor, f_new: Tensor, eps: float) -> float:
    """Max over problems of ||P 1 - a||_1 for the plan of (f_old, g) (balanced; with ``tau``,
    ``f_new`` is the damped update and this is its fixed-point residual); one host sync."""
    ratio = torch.clamp((f_old - f_new) / eps, max=_MAX_LOG_RATIO)
    return float((a * torch.expm1(ratio).abs()).sum(dim=1).max())


def _annealing_schedule(cost: Tensor, epsilon: float, scaling: float | None) -> list[float]:
    """Temperatures from the cost range down to (excluding) ``epsilon``, each ``scaling`` times
    the last, one sweep each: warm starts for small-eps problems. Too coarse a factor leaves
    the cross problems in a plan that sweeps at the target eps do not repair within
    ``max_iters`` (``benchmarks/bench_ot_schedule.py``). The start is the whole batch's range,
    so an unconverged pair's result depends slightly on the other pairs of its batch."""
    if scaling is None:
        return []
    start = float(cost.amax() - cost.amin())
    schedule = []
    eps = start
    while eps > epsilon:
        schedule.append(eps)
        eps *= scaling
    return schedule


def _safe_log(mass: Tensor) -> Tensor:
    return torch.where(mass > 0, mass.log(), torch.full_like(mass, -math.inf))


def _one_hot_first(mass: Tensor) -> Tensor:
    one_hot = torch.zeros_like(mass)
    one_hot[:, 0] = 1.0
    return one_hot


def _check_problem(cost: Tensor, a: Tensor, b: Tensor, epsilon: float, tau: float | None) -> None:
    if cost.dim() != 3:
        raise ValueError(f"cost must have shape (B, n, m), got {tuple(cost.shape)}")
    batch, n, m = cost.shape
    if tuple(a.shape) != (batch, n) or tuple(b.shape) != (batch, m):
        raise ValueError(
            f"masses must have shapes (B, n)={(batch, n)} and (B, m)={(batch, m)}, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if n == 0 or m == 0:
        raise ValueError(f"cost has an empty dimension: {tuple(cost.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if tau is not None and not tau > 0:
        raise ValueError(f"tau must be > 0 or None, got {tau}")
