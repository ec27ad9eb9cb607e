"""The PyTorch side on a CUDA GPU: losses, their compiled paths, and the training scripts.

Skipped where ``torch.cuda.is_available()`` is False, as on CI; on a machine with a GPU:

    python -m pytest tests/cuda -v

The CPU tests already check every loss against its NumPy reference; these check that the GPU
computes the same values and gradients (float32 on the GPU against float64 on the CPU), that
half precision stays finite there, that the ``compile=True`` paths (Triton kernels on the GPU,
not C++ as on the CPU) agree with the eager ones, and that the options only a GPU exercises
(``--amp fp16`` with its grad scaler, NCCL under torchrun, Keras on the torch backend's CUDA
device) train.
"""

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch

import companion.torch as ct
from companion.torch import _kernels, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
TIMEOUT = 600  # seconds for a subprocess of run_module: it trains, compiling on the GPU
TINY = [
    "--device", "cuda", "--image-size", "32", "--n-train", "32", "--n-val", "16",
    "--batch-size", "8", "--base-channels", "8", "--depth", "2", "--quiet",
]  # fmt: skip


def binary_data(dtype=torch.float32, shape=(4, 1, 48, 48), scale=3.0):
    generator = torch.Generator().manual_seed(0)
    logits = scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    target = (torch.rand(shape, generator=generator, dtype=torch.float64) < 0.1).double()
    target[1] = 0.0  # one empty mask
    return logits, target


def class_data(n_classes=5, shape=(3, 24, 24)):
    generator = torch.Generator().manual_seed(1)
    logits = 2.0 * torch.randn((shape[0], n_classes, *shape[1:]), generator=generator)
    target = torch.randint(0, n_classes, shape, generator=generator)
    return logits.double(), target


BINARY = {
    "weighted_bce_loss": lambda x, t: ct.weighted_bce_loss(
        x, t, pos_weight=4.0, weight=1.0 + t, reduction="none"
    ),
    "dice_loss": lambda x, t: ct.dice_loss(x, t, reduction="none"),
    "dice_loss batch": lambda x, t: ct.dice_loss(x, t, batch=True),
    "dice_bce_loss": lambda x, t: ct.dice_bce_loss(x, t, pos_weight=2.0, reduction="none"),
    "focal_loss": lambda x, t: ct.focal_loss(x, t, gamma=2.0, alpha=0.25, reduction="none"),
    "tversky_loss": lambda x, t: ct.tversky_loss(x, t, alpha=0.3, beta=0.7, reduction="none"),
    "soft_fbeta_loss": lambda x, t: ct.soft_fbeta_loss(x, t, beta=2.0),
    "PrecisionAtRecallLoss": lambda x, t: ct.PrecisionAtRecallLoss(0.8).to(x.device)(x, t),
    "huber_loss": lambda x, t: ct.huber_loss(x, 3 * t, delta=1.5, reduction="none"),
}

MULTI_CLASS = {
    "weighted_cross_entropy": lambda x, t: ct.weighted_cross_entropy(
        x,
        t,
        class_weights=torch.linspace(0.5, 2.0, x.shape[1], device=x.device),
        weight_map=1.0 + (t % 2).to(x.dtype),
        reduction="none",
    ),
    "cost_sensitive_cross_entropy": lambda x, t: ct.cost_sensitive_cross_entropy(
        x,
        t,
        1.0 + torch.arange(x.shape[1] ** 2, device=x.device).view(x.shape[1], -1) % 3,
        reduction="none",
    ),
    "expected_cost_loss": lambda x, t: ct.expected_cost_loss(
        x,
        t,
        1.0 + torch.arange(x.shape[1] ** 2, device=x.device).view(x.shape[1], -1) % 3,
        reduction="none",
    ),
}


def value_and_grad(loss_fn, input, target):
    input = input.detach().requires_grad_()
    loss = loss_fn(input, target)
    (grad,) = torch.autograd.grad(loss.sum(), input)
    return loss.detach(), grad


def assert_matches_cpu_float64(loss_fn, logits, target, rtol=1e-5, atol=1e-6):
    expected, expected_grad = value_and_grad(loss_fn, logits, target)
    target = target.to(CUDA, torch.float32) if target.is_floating_point() else target.to(CUDA)
    value, grad = value_and_grad(loss_fn, logits.float().to(CUDA), target)
    assert value.device.type == "cuda" and grad.device.type == "cuda"
    torch.testing.assert_close(value.double().cpu(), expected, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad.double().cpu(), expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", BINARY)
def test_binary_losses_on_the_gpu_match_float64_on_the_cpu(name):
    logits, target = binary_data()
    assert_matches_cpu_float64(BINARY[name], logits, target)


@pytest.mark.parametrize("name", MULTI_CLASS)
def test_multiclass_losses_on_the_gpu_match_float64_on_the_cpu(name):
    logits, target = class_data()
    assert_matches_cpu_float64(MULTI_CLASS[name], logits, target)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", [*BINARY, *MULTI_CLASS])
def test_half_precision_on_the_gpu_is_finite_and_close(name, dtype):
    if name in MULTI_CLASS:
        (logits, target), loss_fn = class_data(), MULTI_CLASS[name]
        gpu_target = target.to(CUDA)
    else:
        (logits, target), loss_fn = binary_data(), BINARY[name]
        gpu_target = target.to(CUDA, dtype)  # 0 and 1: exact
    expected, expected_grad = value_and_grad(loss_fn, logits, target)
    value, grad = value_and_grad(loss_fn, logits.to(CUDA, dtype), gpu_target)
    assert grad.dtype == dtype
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    if name == "cost_sensitive_cross_entropy":
        return  # rounding the logits can change a pixel's argmax, hence its cost
    # Inputs rounded to 8 (bfloat16) or 11 (float16) bits: a loose, relative check.
    tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
    torch.testing.assert_close(value.double().cpu(), expected, rtol=tolerance, atol=tolerance)
    scale = expected_grad.abs().max().item()
    assert (grad.double().cpu() - expected_grad).abs().max().item() <= tolerance * scale


@pytest.mark.parametrize("name", [*BINARY, *MULTI_CLASS])
def test_logits_of_1e4_give_finite_losses_and_gradients_on_the_gpu(name):
    if name in MULTI_CLASS:
        (logits, target), loss_fn = class_data(), MULTI_CLASS[name]
    else:
        (logits, target), loss_fn = binary_data(), BINARY[name]
    logits = 1e4 * torch.sign(logits)
    value, grad = value_and_grad(loss_fn, logits.float().to(CUDA), target.to(CUDA))
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


@pytest.fixture
def inductor(monkeypatch):
    """The compiled paths with their real backend: Inductor, which writes Triton kernels."""
    monkeypatch.setattr(_kernels, "COMPILE_BACKEND", "inductor")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("from_logits", [True, False])
def test_compiled_dice_on_the_gpu_equals_the_eager_path(inductor, from_logits, batch):
    logits, target = binary_data(shape=(6, 1, 128, 128))
    input = logits.float().to(CUDA)
    input = input if from_logits else torch.sigmoid(input)
    target = target.float().to(CUDA)
    options = dict(from_logits=from_logits, batch=batch, reduction="none")
    eager = value_and_grad(lambda x, t: ct.dice_loss(x, t, **options), input, target)
    fused = value_and_grad(lambda x, t: ct.dice_loss(x, t, **options, compile=True), input, target)
    for expected, actual in zip(eager, fused, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)


def test_compiled_cost_sensitive_loss_on_the_gpu_equals_the_eager_path(inductor):
    logits, target = class_data(n_classes=10, shape=(2, 64, 64))
    logits = logits.float().to(CUDA)
    logits[0, :, :4] = 0.0  # ties: the first class wins on both paths
    logits[1, :, :4] = 1e4 * torch.sign(logits[1, :, :4])  # huge logits
    target = target.to(CUDA)
    cost = 1.0 + torch.rand(10, 10, generator=torch.Generator().manual_seed(2)).to(CUDA)
    eager = value_and_grad(
        lambda x, t: ct.cost_sensitive_cross_entropy(x, t, cost, reduction="none"),
        logits,
        target,
    )
    fused = value_and_grad(
        lambda x, t: ct.cost_sensitive_cross_entropy(x, t, cost, reduction="none", compile=True),
        logits,
        target,
    )
    for expected, actual in zip(eager, fused, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


# -- the training scripts -----------------------------------------------------------------


def read_metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def assert_finite_metrics(out: Path, epochs: int) -> list[dict]:
    rows = read_metrics(out)
    assert [row["epoch"] for row in rows] == [str(epoch + 1) for epoch in range(epochs)]
    for row in rows:
        assert all(math.isfinite(float(value)) for value in row.values()), row
    return rows


@pytest.mark.parametrize(
    "flags",
    [
        ["--loss", "bce"],
        ["--loss", "dice_bce", "--amp", "bf16", "--channels-last"],
        ["--loss", "focal", "--amp", "fp16"],
        ["--loss", "wce_map", "--amp", "bf16"],
        ["--loss", "cost", "--amp", "fp16", "--channels-last"],
    ],
    ids=" ".join,
)
def test_the_torch_script_trains_on_the_gpu(tmp_path, flags):
    history = train.main([*TINY, *flags, "--epochs", "2", "--out", str(tmp_path)])
    assert len(history) == 2
    assert_finite_metrics(tmp_path, 2)
    checkpoint = torch.load(tmp_path / train.CHECKPOINT, weights_only=True)
    # The fp16 grad scaler's state is saved with the checkpoint (empty when not in use).
    assert bool(checkpoint["scaler"]) == ("fp16" in flags)


def test_resume_into_fp16_on_the_gpu(tmp_path):
    train.main([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    flags = ["--epochs", "2", "--amp", "fp16", "--out", str(tmp_path), "--resume"]
    history = train.main([*TINY, *flags])
    assert [row["epoch"] for row in history] == [1, 2]
    assert torch.load(tmp_path / train.CHECKPOINT, weights_only=True)["scaler"]


def test_resumed_gpu_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, run_module):
    # In a subprocess with PyTorch's deterministic algorithms: by default cuDNN may sum a
    # convolution's gradient in another order from run to run, and Adam turns such rounding
    # differences in near-zero gradients into weight differences of order lr (seen: > 1e-4).
    script = f"""
import torch
torch.use_deterministic_algorithms(True)
from companion.torch import train
tiny = {TINY!r}
straight, resumed = {str(tmp_path / "straight")!r}, {str(tmp_path / "resumed")!r}
history = train.main([*tiny, "--epochs", "2", "--out", straight])
train.main([*tiny, "--epochs", "1", "--out", resumed])
again = train.main([*tiny, "--epochs", "2", "--out", resumed, "--resume"])
first = torch.load(straight + "/checkpoint.pt", weights_only=True)["model"]
second = torch.load(resumed + "/checkpoint.pt", weights_only=True)["model"]
for name in first:
    torch.testing.assert_close(first[name], second[name], rtol=0, atol=1e-6, msg=name)
for row, other in zip(history, again, strict=True):
    assert row.keys() == other.keys()
    for key in row:
        assert abs(row[key] - other[key]) <= 1e-6 * max(1.0, abs(row[key])), (key, row, other)
print("ok")
"""
    result = run_module("-c", script, env={"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")


def test_compiled_training_on_the_gpu_under_torchrun_with_nccl(tmp_path, run_module):
    # One process, but the whole distributed path: NCCL, DDP, then torch.compile of the DDP
    # module, then evaluation through the bare compiled model.
    result = run_module(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        "-m", "companion.torch.train", *TINY, "--epochs", "2", "--compile", "--amp", "bf16",
        "--loss", "wce", "--out", str(tmp_path), timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert_finite_metrics(tmp_path, 2)


def test_torch_benchmark_mode_on_the_gpu(capsys):
    train.main([*TINY, "--benchmark", "--benchmark-steps", "5", "--amp", "bf16"])
    output = capsys.readouterr().out
    assert "images/s" in output and "cuda" in output


needs_keras = pytest.mark.skipif(
    importlib.util.find_spec("keras") is None, reason="needs Keras (torch backend)"
)


@needs_keras
def test_the_keras_script_trains_on_the_gpu_with_the_torch_backend(tmp_path, run_module):
    result = run_module(
        "-m", "companion.keras.train", *TINY, "--epochs", "2", "--loss", "dice_bce",
        "--out", str(tmp_path),
        env={"KERAS_BACKEND": "torch"}, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert_finite_metrics(tmp_path, 2)


@needs_keras
def test_keras_losses_on_the_gpu_equal_the_torch_losses(run_module):
    # In a subprocess: the Keras backend is fixed per process.
    script = """
import keras, torch, numpy as np
import companion.keras as ck, companion.torch as ct
assert keras.backend.backend() == "torch"
g = torch.Generator().manual_seed(0)
x = 3 * torch.randn(4, 32, 32, 1, generator=g)
t = (torch.rand(4, 32, 32, 1, generator=g) < 0.1).float()
xc, tc = x.cuda(), t.cuda()
xt, tt = xc.movedim(-1, 1), tc.movedim(-1, 1)  # channels first for companion.torch
pairs = [
    (ck.dice(tc, xc, from_logits=True), ct.dice_loss(xt, tt, reduction="none")),
    (ck.tversky(tc, xc, alpha=0.3, beta=0.7, from_logits=True),
     ct.tversky_loss(xt, tt, alpha=0.3, beta=0.7, reduction="none")),
    (ck.focal(tc, xc, alpha=0.25, from_logits=True),
     ct.focal_loss(xt, tt, alpha=0.25, reduction="none")[:, 0]),
]
for keras_value, torch_value in pairs:
    assert keras_value.device.type == "cuda", keras_value.device
    torch.testing.assert_close(keras_value.float(), torch_value.float(), rtol=1e-5, atol=1e-6)
print("ok")
"""
    result = run_module("-c", script, env={"KERAS_BACKEND": "torch"}, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")
