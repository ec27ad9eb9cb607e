"""Plain helper functions the tests share, free of any framework: NumPy test data, reductions
and the usage errors of the training scripts.

Tests import them by name (``from helpers import binary_data``): pytest puts ``tests`` on
``sys.path`` (``pythonpath`` in pyproject.toml). The shared fixtures are in conftest.py.
"""

import numpy as np
import pytest


def binary_data(seed, shape, soft=False):
    """float64 logits and 0/1 (or soft) targets of ``shape``; the last sample's target is empty.

    The first axis is the batch; the layout of the others, channels first or last, is the
    caller's.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    target = rng.uniform(size=shape) if soft else (rng.uniform(size=shape) < 0.3).astype(float)
    target[-1] = 0.0
    return logits, target


def class_data(seed, shape):
    """float64 logits of ``shape`` (N, C, H, W) and class indices (N, H, W)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    target = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    return logits, target


def residual_data(seed, delta, shape):
    """float64 prediction and target whose residuals include 0 and exactly +-delta."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=shape)
    prediction = target + rng.normal(scale=2 * delta, size=shape)
    # Where the target is 0, the residual is the prediction exactly.
    boundary = [delta, -delta, 0.0, np.nextafter(delta, 0.0), np.nextafter(-delta, -np.inf)]
    target.flat[: len(boundary)] = 0.0
    prediction.flat[: len(boundary)] = boundary
    return prediction, target


def reduce(values, reduction):
    """Per-element values (a NumPy array) reduced as ``reduction="mean"``, "sum" or "none"."""
    return {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction](values)


def parse_error(capsys, parse_config, argv) -> str:
    """What ``parse_config(argv)`` writes to stderr as it exits with status 2 (a usage error).

    ``capsys`` is the calling test's fixture; ``parse_config`` a training script's.
    """
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err
