"""GPU readiness. The CUDA pieces (pinned asynchronous copies, compiled models, the float32 OT
backends at the paper's eps) are compared with the CPU's or float64 answers; whole trials (bf16
autocast, torch.compile, the joint variant) are checked to run to finite losses and valid scores
on one GPU, not to match a CPU run (bf16 training drifts from it). The CUDA tests run where CUDA
is present and are skipped elsewhere; the compile and copy helpers are also checked on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import padded_batch
from transformers import BertConfig, BertModel

from ot_ray.config import SinkhornConfig
from ot_ray.ot import sinkhorn_divergence
from ot_ray.training import compiled, to_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )  # fmt: skip
    return BertModel(config, add_pooling_layer=False).eval()


def test_to_device_on_the_cpu_is_the_tensor_itself():
    tensor = torch.arange(6)
    assert to_device(tensor, torch.device("cpu")) is tensor


def test_a_compiled_model_computes_the_same_and_saves_the_same_keys():
    model = tiny_bert()
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = model(input_ids=ids).last_hidden_state
        keys = list(model.state_dict())
        assert compiled(model, False)._compiled_call_impl is None
        compiled(model, True)
        assert model._compiled_call_impl is not None  # compiled in place, not left as it was
        fast = model(input_ids=ids).last_hidden_state
        longer = model(input_ids=torch.cat([ids, ids], dim=1)).last_hidden_state  # dynamic
    assert list(model.state_dict()) == keys  # checkpoints are interchangeable
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
    assert longer.shape == (3, 14, 16)


@needs_cuda
def test_pinned_copies_arrive_intact():
    tensor = torch.arange(1000).reshape(10, 100)
    moved = to_device(tensor, torch.device("cuda"))
    torch.cuda.synchronize()
    assert moved.is_cuda and torch.equal(moved.cpu(), tensor)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_ot_divergence_on_cuda_matches_the_cpu(dtype):
    x, y, x_mask, y_mask = padded_batch(8, 12, 10, 16, seed=3)
    options = SinkhornConfig(tol=1e-6, max_iters=5000)
    reference = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.05, options=options)
    cuda = [t.cuda() for t in (x.to(dtype), y.to(dtype), x_mask, y_mask)]
    ours = sinkhorn_divergence(*cuda, epsilon=0.05, options=options)
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(ours.double().cpu(), reference, rtol=tolerance, atol=tolerance)


@needs_cuda
@pytest.mark.parametrize("n_iters", [None, 50])
def test_the_fused_kernel_is_as_accurate_as_the_torch_loop_at_the_paper_eps(n_iters):
    """Costs of encoder-like states (up to ~250) against eps 0.0025: the regime where neither
    loop meets the tolerance and both run max_iters. There float32 itself limits the gradient
    (the plan is exp(potentials / eps), so a rounding of the potentials is magnified by 1 / eps:
    measured on the CPU, the torch loop's float32 gradient is 0.3% off its float64 one), so each
    float32 backend is compared with the float64 torch loop and must be about as close as the
    other."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 60, 768, generator=generator) * 0.4
    noise = torch.randn(x.shape, generator=generator)
    y = x[:, torch.randperm(60, generator=generator)] + 0.3 * noise
    x_mask = torch.ones(24, 60, dtype=torch.bool)
    y_mask = torch.arange(60)[None, :] < torch.randint(20, 61, (24, 1), generator=generator)
    results = {}
    for backend, dtype in (("native", torch.float64), ("native", torch.float32), ("fused", None)):
        options = SinkhornConfig(backend=backend, n_iters=n_iters)
        dtype = dtype or torch.float32
        states = x.to("cuda", dtype).requires_grad_(True)
        value = sinkhorn_divergence(
            states,
            y.to("cuda", dtype),
            x_mask.cuda(),
            y_mask.cuda(),
            epsilon=0.0025,
            options=options,
        )
        value.sum().backward()
        results[(backend, dtype)] = (value.detach().double().cpu(), states.grad.double().cpu())
    value, grad = results[("native", torch.float64)]
    errors = {}
    for key in (("native", torch.float32), ("fused", torch.float32)):
        other_value, other_grad = results[key]
        torch.testing.assert_close(other_value, value, rtol=1e-4, atol=1e-3)
        errors[key[0]] = float((other_grad - grad).norm() / grad.norm())
    print(f"float32 gradient error against float64: {errors}")
    assert errors["fused"] < 2 * errors["native"] + 1e-4 and errors["fused"] < 1e-2


@needs_cuda
@pytest.mark.parametrize("compile_models", [False, True])
def test_a_trial_runs_on_the_gpu(tmp_path: Path, compile_models: bool):
    """The small demo trial with bf16 autocast (and torch.compile) on one GPU."""
    from conftest import tiny_trial_overrides

    from ot_ray.config import load_config
    from ot_ray.launch import resolve_paths
    from ot_ray.reporters import LocalReporter
    from ot_ray.trial import run_trial

    overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out"))
    overrides += ["train.use_gpu=true", "train.bf16=true", f"train.compile={compile_models}"]
    config = resolve_paths(load_config(None, overrides))
    metrics = run_trial(config, LocalReporter(tmp_path / "out"), show_progress=False)
    assert metrics["align/steps"] > 0 and torch.isfinite(torch.tensor(metrics["align/loss"]))
    assert 0 <= metrics["xnli/test/acc/avg_all"] <= 100
    assert 0 <= metrics["xquad/test/f1/avg_all"] <= 100


@needs_cuda
def test_the_fixed_pivot_joint_variant_runs_on_the_gpu(tmp_path: Path):
    """The joint OT term (pivot side without gradient) inside bf16 task training on one GPU."""
    from conftest import tiny_trial_overrides

    from ot_ray.config import load_config
    from ot_ray.launch import resolve_paths
    from ot_ray.reporters import LocalReporter
    from ot_ray.trial import run_trial

    overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out"))
    overrides += [
        "train.use_gpu=true",
        "train.bf16=true",
        "task.tasks=[xnli]",
        "alignment.joint_weight=0.03",
        "alignment.joint_detach_pivot=true",
    ]
    config = resolve_paths(load_config(None, overrides))
    metrics = run_trial(config, LocalReporter(tmp_path / "out"), show_progress=False)
    loss = metrics["xnli/joint/align/loss"]
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert 0 <= metrics["xnli/test/acc/avg_all"] <= 100
