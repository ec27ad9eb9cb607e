"""Fixtures of the PyTorch tests, over those of tests/conftest.py."""

import pytest


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """One thread per subprocess: the tests run beside each other on few cores."""
    return {"OMP_NUM_THREADS": "1"}
