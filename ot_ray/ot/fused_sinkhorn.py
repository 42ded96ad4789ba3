"""The Sinkhorn loop as one GPU kernel: every iteration of every problem in a single launch.

Why: on a GPU the torch-op loop in :mod:`ot_ray.ot.solver` is bound by kernel launches, not
arithmetic. Each sweep is some twenty small kernels, and at the paper's eps the loop runs
1000 sweeps, so on an H100 the OT loss took about 90% of an mBERT alignment step (README, "Cost
of the OT loss"). Here one Triton program owns one problem: it loads the cost matrix once,
keeps it in registers and runs the annealing schedule and every iteration at the target eps
without leaving the kernel. Each problem stops at its own tolerance; the torch loop stops the
whole batch at the worst problem's.

The updates are the torch loop's: the same alternating (or, for the symmetric debiasing terms,
averaged) log-domain updates, the same floor on exp() arguments, the same marginal-error check
every ``check_every`` sweeps. Only the potentials come from here; the value and its envelope
gradient are computed by :func:`ot_ray.ot.solver.dual_value` as for every backend.

Problems up to 128 x 128 (``MAX_SIDE``) fit in registers; larger ones raise, and
``backend: auto`` uses the torch loop for them.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from ot_ray.config import SinkhornConfig

#: Largest padded side (words per sentence) a register-resident problem may have.
MAX_SIDE = 128

try:  # Triton ships with CUDA builds of torch; CPU machines need not have it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None


def fused_available(cost: Tensor) -> bool:
    """Whether the fused kernel can solve problems of this tensor's device, dtype and size."""
    if triton is None or cost.dtype != torch.float32:
        return False
    if max(cost.shape[1], cost.shape[2]) > MAX_SIDE:
        return False
    return cost.is_cuda or _interpreted()


def _interpreted() -> bool:
    """Whether the kernel was defined under Triton's CPU interpreter (TRITON_INTERPRET=1 when
    this module was imported): how the tests run it on machines without a GPU."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_sinkhorn_kernel, InterpretedFunction)


def fused_potentials(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    epsilon: float,
    tau: float | None,
    options: SinkhornConfig,
    schedule: list[float],
    symmetric: bool = False,
) -> tuple[Tensor, Tensor, int, float | None]:
    """Dual potentials ``f`` (B, n), ``g`` (B, m) after the annealing ``schedule`` and the
    iterations at ``epsilon``; also the most iterations any problem ran and the worst final
    marginal error (None with a fixed ``n_iters``)."""
    if not fused_available(cost):
        raise ValueError(
            "the fused Sinkhorn kernel needs Triton, a CUDA tensor of float32 costs and at most "
            f"{MAX_SIDE} words a side; got {cost.dtype} on {cost.device} with shape "
            f"{tuple(cost.shape)}. Use alignment.ot.solver.backend: native (or auto)."
        )
    batch, n, m = cost.shape
    cost = cost.contiguous()
    device = cost.device
    f = torch.empty((batch, n), dtype=torch.float32, device=device)
    g = torch.empty((batch, m), dtype=torch.float32, device=device)
    iters = torch.empty(batch, dtype=torch.int32, device=device)
    errors = torch.empty(batch, dtype=torch.float32, device=device)
    temperatures = torch.tensor([*schedule, epsilon], dtype=torch.float32, device=device)
    block_n, block_m = _block(n), _block(m)
    fixed = options.n_iters is not None
    launch = _sinkhorn_kernel[(batch,)]
    # Triton launches on the current CUDA device; the problem's device may be another one.
    with torch.cuda.device(device) if cost.is_cuda else contextlib.nullcontext():
        launch(
            cost,
            log_a.contiguous(),
            log_b.contiguous(),
            temperatures,
            len(schedule),
            f,
            g,
            iters,
            errors,
            n,
            m,
            0.0 if tau is None else 1.0 / tau,
            options.n_iters if fixed else options.max_iters,
            options.check_every,
            options.tol,
            SYMMETRIC=symmetric,
            FIXED=fixed,
            BLOCK_N=block_n,
            BLOCK_M=block_m,
            num_warps=_warps(block_n * block_m),
        )
    most, worst = torch.stack([iters.max().float(), errors.max()]).tolist()  # one host sync
    return f, g, int(most), None if fixed else worst


def _block(side: int) -> int:
    return max(16, 1 << math.ceil(math.log2(side)))


def _warps(elements: int) -> int:
    """Warps per program: one per 8 rows of a square tile (16x16: 2, 128x128: 16), a power of
    two as Triton needs. Each sweep is a chain of latency-bound row and column reductions, so
    more warps shorten it even with few entries a thread: timed on an H200 for square tiles of
    16 to 128 (``benchmarks/bench_fused_warps.py``)."""
    return 1 << max(1, min(4, (elements.bit_length() - 7) // 2))


if triton is not None:

    @triton.jit
    def _softmin_rows(neg_cost, log_w, potential, eps, valid, keep):
        """-eps log sum_j w_j exp((potential_j - C_ij) / eps) for each row i (j on axis 1);
        0 on the rows outside the problem (``keep`` false)."""
        values = neg_cost + (log_w + potential / eps)[None, :]
        peak = tl.max(tl.where(valid, values, -float("inf")), axis=1)
        peak = tl.where(keep, peak, 0.0)  # lines outside the problem: no inf - inf
        shifted = tl.where(
            valid, tl.maximum(values - peak[:, None], -80.0), -80.0
        )  # solver._LSE_FLOOR
        total = tl.sum(tl.where(valid, tl.exp(shifted), 0.0), axis=1)
        return tl.where(keep, -eps * (peak + tl.log(tl.where(keep, total, 1.0))), 0.0)

    @triton.jit
    def _softmin_cols(neg_cost, log_w, potential, eps, valid, keep):
        """The same over rows i, for each column j."""
        values = neg_cost + (log_w + potential / eps)[:, None]
        peak = tl.max(tl.where(valid, values, -float("inf")), axis=0)
        peak = tl.where(keep, peak, 0.0)  # lines outside the problem: no inf - inf
        shifted = tl.where(valid, tl.maximum(values - peak[None, :], -80.0), -80.0)
        total = tl.sum(tl.where(valid, tl.exp(shifted), 0.0), axis=0)
        return tl.where(keep, -eps * (peak + tl.log(tl.where(keep, total, 1.0))), 0.0)

    @triton.jit
    def _sinkhorn_kernel(
        cost_ptr,
        log_a_ptr,
        log_b_ptr,
        temperatures_ptr,
        n_annealing,
        f_ptr,
        g_ptr,
        iters_ptr,
        errors_ptr,
        n,
        m,
        inv_tau,
        max_iters,
        check_every,
        tol,
        SYMMETRIC: tl.constexpr,
        FIXED: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):
        problem = tl.program_id(0).to(tl.int64)
        rows = tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_M)
        row_in, col_in = rows < n, cols < m
        valid = row_in[:, None] & col_in[None, :]
        offsets = problem * n * m + rows[:, None] * m + cols[None, :]
        cost = tl.load(cost_ptr + offsets, mask=valid, other=0.0)
        log_a = tl.load(log_a_ptr + problem * n + rows, mask=row_in, other=-float("inf"))
        log_b = tl.load(log_b_ptr + problem * m + cols, mask=col_in, other=-float("inf"))
        a = tl.exp(log_a)
        f = tl.zeros((BLOCK_N,), tl.float32)
        g = tl.zeros((BLOCK_M,), tl.float32)

        # Annealing: one sweep per temperature, from the cost range down to eps.
        step = tl.full((), 0, tl.int32)
        while step < n_annealing:  # a while loop: Triton's interpreter cannot range() here
            eps = tl.load(temperatures_ptr + step)
            step += 1
            damping = 1.0 / (1.0 + eps * inv_tau)
            neg_cost = cost * (-1.0 / eps)
            if SYMMETRIC:
                f = 0.5 * (f + damping * _softmin_rows(neg_cost, log_a, f, eps, valid, row_in))
            else:
                f = damping * _softmin_rows(neg_cost, log_b, g, eps, valid, row_in)
                g = damping * _softmin_cols(neg_cost, log_a, f, eps, valid, col_in)

        eps = tl.load(temperatures_ptr + n_annealing)
        damping = 1.0 / (1.0 + eps * inv_tau)
        neg_cost = cost * (-1.0 / eps)
        error = tl.full((), float("inf"), tl.float32)
        done = tl.full((), 0, tl.int32)
        while (done < max_iters) & (error >= tol):
            f_old = f
            if SYMMETRIC:
                update = damping * _softmin_rows(neg_cost, log_a, f, eps, valid, row_in)
                f = 0.5 * (f + update)
            else:
                update = damping * _softmin_rows(neg_cost, log_b, g, eps, valid, row_in)
                f = update
                g = damping * _softmin_cols(neg_cost, log_a, f, eps, valid, col_in)
            done += 1
            if not FIXED:  # noqa: SIM102 (a compile-time branch; the inner one runs on device)
                if (done % check_every == 0) | (done == max_iters):
                    # ||P 1 - a||_1 of the plan of (f_old, g): solver._row_marginal_error
                    ratio = tl.minimum((f_old - update) / eps, 30.0)
                    error = tl.sum(tl.where(row_in, a * tl.abs(tl.exp(ratio) - 1.0), 0.0))

        if SYMMETRIC:
            g = f
        tl.store(f_ptr + problem * n + rows, f, mask=row_in)
        tl.store(g_ptr + problem * m + cols, g, mask=col_in)
        tl.store(iters_ptr + problem, done)
        tl.store(errors_ptr + problem, error)
