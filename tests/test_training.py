"""companion.training: what the two training scripts share."""

import dataclasses
import importlib
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


# -- the options ----------------------------------------------------------------------------


def options_parser():
    return training.build_parser(training.TrainingOptions, prog="train", description="")


@pytest.mark.parametrize("script", ["companion.torch.train", "companion.keras.train"])
def test_the_scripts_take_the_shared_options_as_declared(script):
    # Each option of TrainingOptions keeps its default and its --help text in the scripts:
    # their Config redefines none of them.
    shared = {field.name: field for field in dataclasses.fields(training.TrainingOptions)}
    for field in dataclasses.fields(importlib.import_module(script).Config):
        if field.name in shared:
            assert field.default == shared[field.name].default, field.name
            assert field.metadata == shared[field.name].metadata, field.name


def test_the_common_checks_read_only_the_options_they_declare():
    # A plain TrainingOptions is enough: the checks read no field of a script's own Config.
    training.check_common_options(options_parser(), training.TrainingOptions())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"n_classes": 1}, "--n-classes must be >= 2"),
        ({"image_size": 30, "depth": 2}, "--image-size 30 must be a multiple of 2**depth = 4"),
        ({"n_train": 4, "batch_size": 8}, "--n-train 4 must hold at least one batch (8)"),
    ],
)
def test_the_common_checks_exit_with_a_clear_error(capsys, changes, message):
    options = dataclasses.replace(training.TrainingOptions(), **changes)
    with pytest.raises(SystemExit) as exit_info:
        training.check_common_options(options_parser(), options)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_resumed_run_must_match_the_saved_one(capsys):
    options = training.TrainingOptions()
    saved = dataclasses.asdict(options)
    training.check_same_run(options_parser(), options, saved, "runs/x")
    # Only the options that build the data, the model and the optimizer count.
    training.check_same_run(options_parser(), dataclasses.replace(options, epochs=20), saved, "x")
    changed = dataclasses.replace(options, depth=3, lr=0.1)
    with pytest.raises(SystemExit):
        training.check_same_run(options_parser(), changed, saved, "runs/x")
    assert "--resume: runs/x was trained with --lr 0.001, --depth 4" in capsys.readouterr().err


# -- the data -------------------------------------------------------------------------------


def small_options(loss):
    return training.TrainingOptions(loss=loss, image_size=32, n_train=4, n_val=2, batch_size=2)


def test_binary_splits_hold_masks_and_their_positive_fraction():
    train_split, val_split, stats = training.make_splits(small_options("weighted_bce"))
    assert train_split.images.shape == train_split.targets.shape == (4, 32, 32)
    assert val_split.images.shape == (2, 32, 32)
    assert train_split.targets.dtype == np.float32
    assert train_split.weight_maps is None
    positive = train_split.targets.mean()
    np.testing.assert_allclose(stats["frequencies"], [positive], rtol=1e-6)
    np.testing.assert_allclose(stats["pos_weight"], (1 - positive) / positive, rtol=1e-6)


@pytest.mark.parametrize("loss", ["wce", "wce_map", "cost"])
def test_multiclass_splits_hold_class_indices_and_wce_map_its_weight_maps(loss):
    train_split, val_split, stats = training.make_splits(small_options(loss))
    assert train_split.targets.shape == (4, 32, 32)
    assert np.issubdtype(train_split.targets.dtype, np.integer)
    counts = np.bincount(train_split.targets.ravel(), minlength=3)
    np.testing.assert_allclose(stats["frequencies"], counts / counts.sum())
    assert stats["class_weights"].shape == (3,)
    if loss != "wce_map":
        assert train_split.weight_maps is val_split.weight_maps is None
        return
    assert train_split.weight_maps.shape == (4, 32, 32)
    assert val_split.weight_maps.dtype == np.float32
    # Each map holds the class weight of its pixel, and more near the borders.
    floor = stats["class_weights"][train_split.targets]
    assert np.all(train_split.weight_maps >= floor.astype(np.float32) * (1 - 1e-6))


# -- the benchmark timing -------------------------------------------------------------------


def test_time_steps_times_the_first_step_apart_and_skips_the_warm_up():
    durations = iter([5.0, 9.0, 9.0, 0.2, 0.1, 0.3])
    result = training.time_steps(lambda: next(durations), steps=3, batch_size=8, warmup=3)
    assert result == training.BenchmarkResult(8 / 0.2, 0.2, 5.0, 3)
    assert next(durations, None) is None
