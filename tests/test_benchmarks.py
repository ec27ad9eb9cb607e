"""The benchmark scripts run: each once, with the smallest settings, as `make bench` runs them.

Their figures are not checked here (timings on a shared machine are not test material); what
is checked is that every script starts, measures every contender and prints its table, and
that tools/gpu_check.sh, which runs them on a GPU, stops with a clear message without one.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = REPOSITORY / "benchmarks"

SMOKE_RUNS = {
    "huber_torch.py": ["--shape", "2,1,8,8", "--repeats", "1", "--warmup", "0"],
    "data_loader.py": [
        "--image-size", "32", "--n-images", "12", "--batch-size", "2", "--steps", "1",
        "--warmup", "1", "--base-channels", "4", "--depth", "2", "--device", "cpu",
        "--workers", "0,1",
    ],
    "segmentation_losses.py": ["--quick", "--no-compile", "--no-monai", "--no-memory"],
    "train_throughput.py": [
        "--contenders", "torch,torch+channels_last,keras/tensorflow,keras/torch", "--sizes", "16x2",
        "--steps", "1", "--warmup", "1", "--base-channels", "4", "--depth", "2", "--device", "cpu",
    ],
}  # fmt: skip


def test_every_benchmark_has_a_smoke_run():
    scripts = {path.name for path in BENCHMARKS.glob("[!_]*.py")}
    assert scripts == set(SMOKE_RUNS)


@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_benchmark_runs(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *SMOKE_RUNS[script]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ms" in result.stdout or "images/s" in result.stdout, result.stdout


@pytest.mark.parametrize("script", ["huber_torch.py", "segmentation_losses.py"])
def test_bad_timing_options_are_errors(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--repeats must be >= 1" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--contenders", "keras/jax"], "unknown script 'keras/jax'"),
        (["--contenders", "keras/torch+channels_last"], "channels_last applies to torch only"),
        (["--contenders", "torch+no_onednn"], "no_onednn applies to keras/tensorflow only"),
        (["--sizes", "64"], "--sizes '64': expected IMAGE_SIZExBATCH_SIZE"),
    ],
)
def test_bad_contenders_are_errors(argv, message):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_gpu_check_refuses_clearly_without_a_gpu(tmp_path):
    result = subprocess.run(
        ["bash", str(REPOSITORY / "tools" / "gpu_check.sh"), str(tmp_path)],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "no CUDA device: these checks need a GPU" in result.stdout + result.stderr
    assert (tmp_path / "environment.log").exists()
    assert not (tmp_path / "tests.log").exists()  # it stopped before the tests
