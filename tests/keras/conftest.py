"""Fixtures of the Keras tests, over those of tests/conftest.py."""

import keras
import pytest


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """This process's Keras backend, and TensorFlow's start-up without its log lines."""
    return {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "KERAS_BACKEND": keras.backend.backend(),
    }
