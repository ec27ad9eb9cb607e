"""Fixtures for every test folder; the plain helper functions are in helpers.py beside this.

The ``run_module`` fixture starts ``python ARGS...`` in the repository root, with the
variables of the ``subprocess_env`` fixture over this process's environment. A folder's
conftest.py overrides ``subprocess_env`` where its subprocesses need more: one thread for
PyTorch (tests/torch), the Keras backend and TensorFlow's quiet start (tests/keras).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Variables that ``run_module`` sets in its subprocesses, over ``os.environ``."""
    return {}


@pytest.fixture
def run_module(subprocess_env):
    """``run_module(*args, env=None, timeout=120)``: ``python *args`` run to its end.

    Returns the ``subprocess.CompletedProcess``, stdout and stderr captured as text. ``env``
    adds variables over those of ``subprocess_env``.
    """

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPOSITORY,
            env={**os.environ, **subprocess_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
