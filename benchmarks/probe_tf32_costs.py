"""What would TF32 matmuls do to the OT loss at the paper's eps? Emulated on the CPU, or measured.

A GPU trial allows TF32 (``train.tf32``), whose tensor cores round each GEMM input to 10 bits of
mantissa and accumulate in float32. The squared-Euclidean costs are one GEMM each
(|x|^2/2 + |y|^2/2 - <x, y>), and their gradient two more, so without
``ot_ray.precision.full_float32_matmuls`` they would all be computed that way. This rounds the
inputs of those GEMMs as TF32 does, and compares costs, the debiased divergence and its gradient
with float64 and with plain float32, on encoder-like states (a sentence and a permuted noisy
copy in 768 dimensions) at two scales of the states.

    python benchmarks/probe_tf32_costs.py [--pairs 24] [--words 60] [--rounding truncate|device]

Rounding to nearest or by truncation needs no GPU: it is done by hand, so those figures are an
emulation, not a measurement of cuBLAS. ``--rounding device`` measures it instead: on a GPU,
the same states and GEMMs run on the device with TF32 allowed, as a trial does, the TF32 column
with the cost GEMMs unguarded (the same GEMMs as before ``full_float32_matmuls``, summed in
another order) and the float32 column as the costs run now.
"""

from __future__ import annotations

import argparse
import functools
import sys

import torch
import torch.nn.functional as F

from ot_ray.cli import positive_int
from ot_ray.config import SinkhornConfig
from ot_ray.ot import costs, sinkhorn_divergence
from ot_ray.ot import divergence as divergence_module
from ot_ray.precision import allow_tf32

EPSILON = 0.0025  # the paper's


#: How the 13 low mantissa bits go: "nearest" (ties away from zero, as PTX's cvt.rna.tf32) or
#: "truncate" (dropped, as when the tensor cores just ignore them); which one cuBLAS does is
#: not documented, so the probe can show both. "device" leaves the rounding to the GPU.
ROUNDING = {"nearest": 0x1000, "truncate": 0, "device": None}


def tf32_rounded(tensor: torch.Tensor, rounding: str) -> torch.Tensor:
    """float32 values with TF32's 10 mantissa bits (``rounding``: see ROUNDING)."""
    if ROUNDING[rounding] is None:
        return tensor
    bits = tensor.contiguous().view(torch.int32)
    return ((bits + ROUNDING[rounding]) & ~0x1FFF).view(torch.float32)


class Tf32Bmm(torch.autograd.Function):
    """``torch.bmm`` as tensor cores run it in TF32: inputs rounded, float32 accumulation; the
    gradient's two GEMMs likewise."""

    @staticmethod
    def forward(ctx, a, b, rounding):
        ctx.save_for_backward(a, b)
        ctx.rounding = rounding
        return torch.bmm(tf32_rounded(a, rounding), tf32_rounded(b, rounding))

    @staticmethod
    def backward(ctx, grad):
        grad, a, b = (tf32_rounded(t, ctx.rounding) for t in (grad, *ctx.saved_tensors))
        return torch.bmm(grad, b.transpose(1, 2)), torch.bmm(a.transpose(1, 2), grad), None


def tf32_cost(x, y, rounding: str):
    """|x - y|^2 / 2 as ``ot_ray.ot.costs`` computes it, its GEMM (forward and backward) in TF32."""
    half_norms = costs._half_sq_norms(x)[:, :, None] + costs._half_sq_norms(y)[:, None, :]
    return (half_norms - Tf32Bmm.apply(x, y.transpose(1, 2), rounding)).clamp_min(0.0)


def tf32_debiasing_costs(x, y, cost="sqeuclidean", *, rounding: str):
    """``costs.debiasing_costs`` (xy, xx, yy stacked) with TF32 GEMMs."""
    return torch.cat(
        [tf32_cost(x, y, rounding), tf32_cost(x, x, rounding), tf32_cost(y, y, rounding)]
    )


def states(pairs: int, words: int, scale: float, generator: torch.Generator):
    x = torch.randn(pairs, words, 768, generator=generator) * scale
    noise = torch.randn(x.shape, generator=generator)
    y = x[:, torch.randperm(words, generator=generator)] + 0.75 * scale * noise
    x_mask = torch.ones(pairs, words, dtype=torch.bool)
    lengths = torch.randint(max(1, words // 3), words + 1, (pairs, 1), generator=generator)
    return x, y, x_mask, torch.arange(words)[None, :] < lengths


def divergence(inputs, dtype: torch.dtype, tf32_rounding: str | None):
    """Divergence and gradient, with the costs' GEMMs in TF32 when a rounding is given."""
    x, y, x_mask, y_mask = inputs
    exact = divergence_module.debiasing_costs
    if tf32_rounding is not None:
        rounded = functools.partial(tf32_debiasing_costs, rounding=tf32_rounding)
        divergence_module.debiasing_costs = rounded
    try:
        leaf = x.to(dtype).clone().requires_grad_(True)
        value = sinkhorn_divergence(
            leaf,
            y.to(dtype),
            x_mask,
            y_mask,
            epsilon=EPSILON,
            options=SinkhornConfig(backend="native"),
        )
        value.sum().backward()
    finally:
        divergence_module.debiasing_costs = exact
    return value.detach().double(), leaf.grad.double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=positive_int, default=24)
    parser.add_argument("--words", type=positive_int, default=60)
    parser.add_argument("--rounding", choices=sorted(ROUNDING), default="nearest")
    args = parser.parse_args()
    on_gpu = args.rounding == "device"
    if on_gpu and not torch.cuda.is_available():
        sys.exit("probe_tf32_costs.py: --rounding device needs a CUDA GPU (a CPU has no TF32)")
    device = torch.device("cuda" if on_gpu else "cpu")
    where = torch.cuda.get_device_name() if on_gpu else "CPU"
    allow_tf32(on_gpu)  # as a GPU trial does (train.tf32); the guarded costs turn it off
    print(
        f"eps {EPSILON}, default solver (torch loop), {args.pairs} pairs x {args.words} words, "
        f"TF32 inputs rounded: {args.rounding} ({where}, torch {torch.__version__})"
    )
    columns = ["states", "costs up to", "max cost error: float32", "TF32"]
    columns += ["divergence rel. error: float32", "TF32", "gradient rel. error: float32", "TF32"]
    print("| " + " | ".join([*columns, "min gradient cosine, TF32"]) + " |")
    print("|---" * 9 + "|")
    for scale in (0.4, 0.7):
        inputs = states(args.pairs, args.words, scale, torch.Generator().manual_seed(5))
        inputs = tuple(t.to(device) for t in inputs)
        x, y = inputs[0], inputs[1]
        exact = costs.cost_matrix(x.double(), y.double())
        as_float32 = costs.cost_matrix(x, y).double()
        as_tf32 = tf32_cost(x, y, args.rounding)
        value, grad = divergence(inputs, torch.float64, None)
        cells = [f"x {scale}", f"{float(exact.max()):.0f}"]
        cells += [f"{float((c - exact).abs().max()):.1e}" for c in (as_float32, as_tf32.double())]
        results = [divergence(inputs, torch.float32, r) for r in (None, args.rounding)]
        cells += [f"{float(((v - value).abs() / value.abs()).max()):.1e}" for v, _ in results]
        cells += [f"{float((g - grad).norm() / grad.norm()):.1e}" for _, g in results]
        cosine = F.cosine_similarity(results[1][1].flatten(1), grad.flatten(1))
        cells.append(f"{float(cosine.min()):.4f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
