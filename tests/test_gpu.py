"""GPU readiness. The CUDA pieces (pinned asynchronous copies, compiled models, the float32 OT
backends at the paper's eps) are compared with the CPU's or float64 answers; whole trials (bf16
autocast, torch.compile, the joint variant) are checked to run to finite losses and valid scores
on one GPU, not to match a CPU run (bf16 training drifts from it). The CUDA tests run where CUDA
is present and are skipped elsewhere; the compile and copy helpers are also checked on the CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import padded_batch
from transformers import BertConfig, BertModel

from ot_ray.config import SinkhornConfig
from ot_ray.ot import sinkhorn_divergence
from ot_ray.precision import allow_tf32
from ot_ray.training import compiled, to_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run_on_cuda(config, out: Path) -> dict:
    """A whole trial, and proof that its models were on the GPU: a trial that ignored
    ``train.use_gpu`` would pass every score check on the CPU. Training holds at least the
    encoder's weights on the GPU at once (with their gradients, Adam's moments and the frozen
    reference, several times that), so the peak is at least the saved encoder's size."""
    from ot_ray.reporters import LocalReporter
    from ot_ray.trial import run_trial

    torch.cuda.reset_peak_memory_stats()
    metrics = run_trial(config, LocalReporter(out), show_progress=False)
    weights = (out / "aligned_encoder" / "model.safetensors").stat().st_size
    assert torch.cuda.max_memory_allocated() >= weights > 0
    return metrics


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


def encoder_like_states(generator: torch.Generator):
    """24 pairs of 60 words in 768 dimensions: a sentence and a permuted noisy copy of it, the
    target side 20 to 60 words long; costs up to ~190."""
    x = torch.randn(24, 60, 768, generator=generator) * 0.4
    noise = torch.randn(x.shape, generator=generator)
    y = x[:, torch.randperm(60, generator=generator)] + 0.3 * noise
    x_mask = torch.ones(24, 60, dtype=torch.bool)
    y_mask = torch.arange(60)[None, :] < torch.randint(20, 61, (24, 1), generator=generator)
    return x, y, x_mask, y_mask


def divergence_and_gradient(inputs, dtype: torch.dtype, options: SinkhornConfig):
    x, y, x_mask, y_mask = (t.cuda() for t in inputs)
    states = x.to(dtype).requires_grad_(True)
    value = sinkhorn_divergence(
        states, y.to(dtype), x_mask, y_mask, epsilon=0.0025, options=options
    )
    value.sum().backward()
    return value.detach().double().cpu(), states.grad.double().cpu()


@needs_cuda
@pytest.mark.parametrize("n_iters", [None, 50])
def test_the_fused_kernel_is_as_accurate_as_the_torch_loop_at_the_paper_eps(n_iters):
    """Costs of encoder-like states (up to ~250) against eps 0.0025: the regime where neither
    loop meets the tolerance and both run max_iters. There float32 itself limits the gradient
    (the plan is exp(potentials / eps), so a rounding of the potentials is magnified by 1 / eps:
    measured on the CPU, the torch loop's float32 gradient is 0.3% off its float64 one), so each
    float32 backend is compared with the float64 torch loop and must be about as close as the
    other."""
    inputs = encoder_like_states(torch.Generator().manual_seed(0))
    results = {}
    for backend, dtype in (("native", torch.float64), ("native", torch.float32), ("fused", None)):
        options = SinkhornConfig(backend=backend, n_iters=n_iters)
        dtype = dtype or torch.float32
        results[(backend, dtype)] = divergence_and_gradient(inputs, dtype, options)
    value, grad = results[("native", torch.float64)]
    errors = {}
    for key in (("native", torch.float32), ("fused", torch.float32)):
        other_value, other_grad = results[key]
        torch.testing.assert_close(other_value, value, rtol=1e-4, atol=1e-3)
        errors[key[0]] = float((other_grad - grad).norm() / grad.norm())
    print(f"float32 gradient error against float64: {errors}")
    assert errors["fused"] < 2 * errors["native"] + 1e-4 and errors["fused"] < 1e-2


@needs_cuda
def test_the_ot_costs_keep_full_float32_where_a_trial_allows_tf32():
    """A trial allows TF32 matmuls (``train.tf32``), which keep 10 bits of mantissa. With TF32
    allowed the float32 divergence must stay as close to float64 as it is with TF32 off. Had its
    cost GEMMs used TF32, then on these states (emulated on the CPU,
    ``benchmarks/probe_tf32_costs.py``) the value would be 4.8e-5 (inputs rounded to nearest)
    or 7.1e-4 (truncated) off instead of float32's 5.9e-6, and with rounding the gradient 9.6e-3
    instead of 3.9e-3."""
    inputs = encoder_like_states(torch.Generator().manual_seed(5))
    options = SinkhornConfig(backend="native")
    value, grad = divergence_and_gradient(inputs, torch.float64, options)
    errors = {}
    for tf32 in (False, True):
        allow_tf32(tf32)
        try:
            other_value, other_grad = divergence_and_gradient(inputs, torch.float32, options)
        finally:
            allow_tf32(False)
        value_error = float(((other_value - value).abs() / value.abs()).max())
        errors[tf32] = value_error, float((other_grad - grad).norm() / grad.norm())
    print(f"float32 value and gradient errors against float64, TF32 off / allowed: {errors}")
    (_, off), (value_error, allowed) = errors[False], errors[True]
    assert value_error < 2e-5
    assert allowed < 1.5 * off + 1e-4 and allowed < 1e-2


@needs_cuda
def test_a_float32_trial_on_the_gpu_gives_the_cpu_s_results(tmp_path: Path):
    """bf16 and TF32 off, the torch-loop solver on both, and an encoder without dropout (the CPU
    and CUDA generators draw different masks from one seed): the same trial on the GPU and on
    the CPU may then differ only by the order of float32 sums, so losses and scores must agree.
    Data order and head initialisation come from CPU generators on both."""
    from conftest import tiny_trial_overrides

    from ot_ray.config import load_config
    from ot_ray.data.sources import model_path
    from ot_ray.launch import resolve_paths
    from ot_ray.reporters import LocalReporter
    from ot_ray.trial import run_trial

    def trial_config(device: str, encoder: Path | None = None):
        overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / device))
        overrides += [
            f"train.use_gpu={device == 'cuda'}",
            "train.bf16=false",
            "train.tf32=false",
            "alignment.ot.solver.backend=native",
        ]
        overrides += [f"model.name_or_path={encoder}"] if encoder else []
        return resolve_paths(load_config(None, overrides))

    encoder = tmp_path / "encoder-without-dropout"
    shutil.copytree(model_path(trial_config("cpu")), encoder)  # builds the small world
    settings = json.loads((encoder / "config.json").read_text(encoding="utf-8"))
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(settings), encoding="utf-8")
    results = {}
    for device in ("cpu", "cuda"):
        config = trial_config(device, encoder)
        results[device] = run_trial(config, LocalReporter(tmp_path / device), show_progress=False)
    cpu, gpu = results["cpu"], results["cuda"]
    scores = [k for k in cpu if k.startswith(("xnli/", "xquad/", "align/retrieval_acc/"))]
    scores = [k for k in scores if isinstance(cpu[k], float) and "/loss" not in k]
    gaps = {k: abs(cpu[k] - gpu[k]) for k in scores}
    loss_gap = abs(cpu["align/loss"] - gpu["align/loss"]) / abs(cpu["align/loss"])
    print(f"align/loss relative gap {loss_gap:.2e}; largest score gaps: "
          f"{sorted(gaps.items(), key=lambda kv: -kv[1])[:8]}")  # fmt: skip
    assert cpu["align/steps"] == gpu["align/steps"] > 0
    assert loss_gap < 1e-3
    assert len(scores) > 10 and max(gaps.values()) <= 2.5  # about two of 90 examples


@needs_cuda
@pytest.mark.parametrize("compile_models", [False, True])
def test_a_trial_runs_on_the_gpu(tmp_path: Path, compile_models: bool):
    """The small demo trial with bf16 autocast (and torch.compile) on one GPU."""
    from conftest import tiny_trial_overrides

    from ot_ray.config import load_config
    from ot_ray.launch import resolve_paths

    overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out"))
    overrides += ["train.use_gpu=true", "train.bf16=true", f"train.compile={compile_models}"]
    config = resolve_paths(load_config(None, overrides))
    metrics = run_on_cuda(config, tmp_path / "out")
    assert metrics["align/steps"] > 0 and torch.isfinite(torch.tensor(metrics["align/loss"]))
    assert 0 <= metrics["xnli/test/acc/avg_all"] <= 100
    assert 0 <= metrics["xquad/test/f1/avg_all"] <= 100


@needs_cuda
def test_the_fixed_pivot_joint_variant_runs_on_the_gpu(tmp_path: Path):
    """The joint OT term (pivot side without gradient) inside bf16 task training on one GPU."""
    from conftest import tiny_trial_overrides

    from ot_ray.config import load_config
    from ot_ray.launch import resolve_paths

    overrides = tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out"))
    overrides += [
        "train.use_gpu=true",
        "train.bf16=true",
        "task.tasks=[xnli]",
        "alignment.joint_weight=0.03",
        "alignment.joint_detach_pivot=true",
    ]
    config = resolve_paths(load_config(None, overrides))
    metrics = run_on_cuda(config, tmp_path / "out")
    loss = metrics["xnli/joint/align/loss"]
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert 0 <= metrics["xnli/test/acc/avg_all"] <= 100
