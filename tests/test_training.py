"""companion.training: what the two training scripts share."""

import math
import os
import stat

import numpy as np
import pytest

from companion import training


@pytest.fixture
def fsyncs(monkeypatch):
    """The kind of every file descriptor passed to os.fsync: "file" or "folder"."""
    kinds = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        kinds.append("folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return kinds


def test_replace_durably_syncs_the_file_then_renames_and_syncs_the_folder(tmp_path, fsyncs):
    path, temporary = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.pt.tmp"
    path.write_bytes(b"old")
    temporary.write_bytes(b"new")
    training.replace_durably(temporary, path)
    assert path.read_bytes() == b"new"
    assert not temporary.exists()
    assert fsyncs == ["file", "folder"]


def test_replace_durably_leaves_the_old_file_when_the_temporary_is_missing(tmp_path, fsyncs):
    path = tmp_path / "metrics.csv"
    path.write_text("old")
    with pytest.raises(FileNotFoundError):
        training.replace_durably(tmp_path / "metrics.csv.tmp", path)
    assert path.read_text() == "old"
    assert fsyncs == []


def test_the_torch_checkpoint_and_metrics_are_written_durably(tmp_path, fsyncs):
    torch = pytest.importorskip("torch")
    from companion.torch import train

    config = train.parse_config(["--device", "cpu", "--base-channels", "4", "--depth", "1"])
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train.save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, scaler, 1, [], config)
    train.write_metrics(tmp_path / "metrics.csv", [])
    assert fsyncs == ["file", "folder"] * 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.csv"]


def test_prior_bias_predicts_the_positive_fraction_through_a_sigmoid():
    (bias,) = training.prior_bias([0.011])
    assert 1 / (1 + math.exp(-bias)) == pytest.approx(0.011, rel=1e-12)
    assert bias == pytest.approx(math.log(0.011 / 0.989), rel=1e-12)


def test_prior_bias_predicts_the_class_frequencies_through_a_softmax():
    frequencies = np.array([0.896, 0.052, 0.052])
    bias = training.prior_bias(frequencies)
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), frequencies, rtol=1e-12)


@pytest.mark.parametrize(
    "frequencies, message",
    [
        ([0.0], "all negative or all positive"),
        ([1.0], "all negative or all positive"),
        ([0.9, 0.1, 0.0], "every class needs pixels"),
        ([], "every class needs pixels"),
    ],
)
def test_prior_bias_refuses_a_class_without_pixels(frequencies, message):
    with pytest.raises(ValueError, match=message):
        training.prior_bias(frequencies)
