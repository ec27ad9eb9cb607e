"""python -m companion.keras.train on the current Keras backend: flags, outputs, resume, losses,
and training on a folder of image files (--data).

`make test` runs this file under KERAS_BACKEND=tensorflow and again under KERAS_BACKEND=torch;
the subprocesses inherit the backend (run_module's variables, in tests/keras/conftest.py).
"""

import csv
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from helpers import parse_error
from test_folders import BAD_INPUTS, bad_folder, write_pairs

from companion import folders, training
from companion.data import small_targets
from companion.keras import train

TINY = [
    "--device", "cpu", "--image-size", "32", "--n-train", "16", "--n-val", "8",
    "--batch-size", "8", "--base-channels", "4", "--depth", "2", "--quiet",
]  # fmt: skip


# A folder of 16 images: 12 train, 4 validate, in batches of 4.
DATA = [
    "--device", "cpu", "--batch-size", "4", "--base-channels", "4", "--depth", "2", "--quiet",
    "--val-fraction", "0.25",
]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """16 PNG pairs of 32x32 small_targets images (uint8) and 0/255 masks."""
    root = tmp_path_factory.mktemp("data")
    images, masks = small_targets(16, size=32, seed=0)
    images = np.clip(images * 60 + 100, 0, 255).astype(np.uint8)
    write_pairs(root, images, (masks * 255).astype(np.uint8))
    return root


def saved_variables(path: Path) -> dict[str, np.ndarray]:
    """Every array in a .weights.h5 file (the model's and the optimizer's variables)."""
    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, item: (
                arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


@pytest.fixture(autouse=True)
def eager(monkeypatch):
    """In-process runs on TensorFlow train eagerly: tracing the training, evaluation and
    prediction functions costs seconds per run. The subprocess test runs the traced path."""
    if keras.backend.backend() != "tensorflow":
        return
    make_model = train.make_model

    def make_eager_model(config, stats):
        model = make_model(config, stats)
        model.run_eagerly = True
        return model

    monkeypatch.setattr(train, "make_model", make_eager_model)


# -- the command line ---------------------------------------------------------------------


def test_every_config_field_has_a_flag_with_help():
    parser = train.build_parser()
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    # Every field but in_channels, which the data set.
    assert set(actions) == {field.name for field in dataclasses.fields(train.Config)} - {
        "in_channels"
    }
    for name, action in actions.items():
        assert action.help and len(action.help) > 10, name


def test_defaults_come_from_the_dataclass():
    assert train.parse_config([]) == train.Config()


def test_the_public_names_are_the_entry_points():
    assert {"Config", "parse_config", "train", "benchmark", "main"} <= set(train.__all__)
    assert all(hasattr(train, name) for name in train.__all__)
    assert "make_datasets" not in train.__all__ and "gpu_count" not in train.__all__


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--channels-last"], "unrecognized arguments: --channels-last"),
        (["--num-workers", "2"], "unrecognized arguments: --num-workers 2"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 (mixed_float16) needs a GPU"),
        (
            ["--image-size", "30", "--depth", "2"],
            "--image-size 30 must be a multiple of 2**depth = 4",
        ),
        (["--n-train", "4", "--batch-size", "8"], "--n-train 4 must hold at least one batch (8)"),
        (["--benchmark-steps", "0"], "--benchmark-steps must be >= 1"),
        (["--benchmark", "--resume"], "--benchmark writes no checkpoint"),
    ],
)
def test_bad_flags_are_clear_errors(capsys, argv, message):
    assert message in parse_error(capsys, train.parse_config, argv)


def test_multi_worker_needs_tensorflow_and_tf_config(capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    message = parse_error(capsys, train.parse_config, ["--strategy", "multi-worker"])
    if keras.backend.backend() == "tensorflow":
        assert "--strategy multi-worker: TF_CONFIG is not set" in message
    else:
        assert "needs KERAS_BACKEND=tensorflow, not torch" in message


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's strategy")
@pytest.mark.parametrize(
    ("tf_config", "argv", "message"),
    [
        ("{not json", [], "TF_CONFIG must be JSON with a cluster and a task"),
        ('{"cluster": {"worker": ["a:1"]}}', [], "TF_CONFIG must be JSON with a cluster"),
        (
            json.dumps(
                {"cluster": {"worker": ["a:1"] * 3}, "task": {"type": "worker", "index": 2}}
            ),
            ["--batch-size", "8"],
            "--batch-size 8 (the global batch) must be a multiple of the 3 workers of TF_CONFIG",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}',
            ["--benchmark"],
            "--benchmark times one process",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}',
            ["--data", "."],
            "--strategy multi-worker trains on the synthetic data only",
        ),
    ],
)
def test_bad_multi_worker_setups_are_clear_errors(capsys, monkeypatch, tf_config, argv, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    argv = ["--strategy", "multi-worker", *argv]
    assert message in parse_error(capsys, train.parse_config, argv)


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
    ],
)
def test_the_chief_is_worker_0_unless_the_cluster_names_one(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert train.cluster_workers() == (2, chief)


def test_resume_needs_a_backup(capsys, tmp_path):
    message = parse_error(capsys, train.parse_config, ["--resume", "--out", str(tmp_path)])
    assert f"--resume, but there is no backup at {tmp_path / 'backup'}" in message


def test_a_loss_missing_from_the_package_fails_the_import(run_module):
    # The script imports its losses from companion.keras: one renamed or removed there fails
    # the import of the script (and of this file), not a run that picks it, nor a skip.
    code = "import companion.keras; del companion.keras.dice; import companion.keras.train"
    result = run_module("-c", code)
    assert result.returncode == 1
    assert "cannot import name 'dice' from 'companion.keras'" in result.stderr


# -- a run and its outputs ----------------------------------------------------------------


def test_the_module_trains_and_writes_its_outputs(tmp_path, run_module):
    result = run_module(
        "-m", "companion.keras.train", *TINY, "--epochs", "2", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    # Nothing from TensorFlow's start-up: Keras's one line per epoch, and its epoch headers.
    assert result.stderr == ""
    assert [line for line in result.stdout.splitlines() if line.startswith("Epoch")] == [
        "Epoch 1/2",
        "Epoch 2/2",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "backup",
        "checkpoint.weights.h5",
        "config.json",
        "curves.png",
        "metrics.csv",
        "threshold.json",
    ]
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(train.METRIC_COLUMNS)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["base_channels"] == 4 and saved["in_channels"] == 1
    assert saved["normalization"] == folders.NORMALIZATION
    assert set(saved["statistics"]) == {"pos_weight", "frequencies"}
    threshold = json.loads((tmp_path / "threshold.json").read_text())
    assert set(threshold) == {"value", "rule"} and 0.0 <= threshold["value"] <= 1.0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    history = train.main([*TINY, "--epochs", "2", "--out", str(straight)])
    train.main([*TINY, "--epochs", "1", "--out", str(resumed)])
    history_resumed = train.main([*TINY, "--epochs", "2", "--out", str(resumed), "--resume"])
    expected = saved_variables(straight / train.CHECKPOINT)
    variables = saved_variables(resumed / train.CHECKPOINT)
    assert expected.keys() == variables.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(variables[name], values, rtol=0, atol=1e-6, err_msg=name)
    assert [row["epoch"] for row in history_resumed] == [1, 2]
    for row, again in zip(history, history_resumed, strict=True):
        assert row == pytest.approx(again, rel=1e-6)
    # Without --resume, a run starts afresh, whatever backup lies in its folder.
    assert [
        row["epoch"] for row in train.main([*TINY, "--epochs", "1", "--out", str(resumed)])
    ] == [1]


def free_ports(count: int) -> list[int]:
    """Ports of the loopback interface that nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_two_workers(argv: list[str], out: Path, subprocess_env: dict) -> None:
    """``python -m companion.keras.train ARGV --strategy multi-worker --out OUT`` as two local
    workers, TF_CONFIG on 127.0.0.1, temporary files in OUT.tmp; fails the test unless both
    exit cleanly."""
    scratch = out.with_name(f"{out.name}.tmp")
    scratch.mkdir(exist_ok=True)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes, logs = [], []
    for index in range(2):
        task = {"type": "worker", "index": index}
        logs.append(out.with_name(f"{out.name}.worker{index}.log"))
        with open(logs[-1], "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "companion.keras.train", *argv]
                    + ["--strategy", "multi-worker", "--out", str(out)],
                    cwd=Path(__file__).resolve().parents[2],
                    env={
                        **os.environ,
                        **subprocess_env,
                        "TF_CONFIG": json.dumps({"cluster": cluster, "task": task}),
                        "TMPDIR": str(scratch),
                    },
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for process, log in zip(processes, logs, strict=True):
            assert process.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        for process in processes:
            process.kill()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's strategy")
def test_two_workers_train_as_one_and_resume(tmp_path, subprocess_env):
    # One process, and two workers that split each global batch of 8: the same steps. The
    # two-worker run stops after epoch 1 and resumes to epoch 2 from the chief's backup.
    one, two = tmp_path / "one", tmp_path / "two"
    history = train.main([*TINY, "--epochs", "2", "--out", str(one)])
    run_two_workers([*TINY, "--epochs", "1"], two, subprocess_env)
    assert train.read_metrics(two / train.METRICS)[0] == pytest.approx(history[0], rel=1e-5)
    run_two_workers([*TINY, "--epochs", "2", "--resume"], two, subprocess_env)

    expected = saved_variables(one / train.CHECKPOINT)
    variables = saved_variables(two / train.CHECKPOINT)
    assert expected.keys() == variables.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(variables[name], values, rtol=0, atol=1e-5, err_msg=name)
    resumed = train.read_metrics(two / train.METRICS)
    assert [row["epoch"] for row in resumed] == [1, 2]
    for row, again in zip(history, resumed, strict=True):
        assert again == pytest.approx(row, rel=1e-5)
    # The chief alone wrote into --out; the other worker's temporary folder is gone.
    assert list((tmp_path / "two.tmp").iterdir()) == []
    assert sorted(path.name for path in two.iterdir()) == [
        "backup", "checkpoint.weights.h5", "config.json", "curves.png", "metrics.csv",
        "threshold.json",
    ]  # fmt: skip


def test_resume_refuses_a_different_model(capsys, tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    saved = dataclasses.asdict(train.parse_config([*TINY, "--out", str(tmp_path)]))
    (tmp_path / "config.json").write_text(json.dumps(saved))
    message = parse_error(
        capsys,
        train.parse_config,
        [*TINY, "--epochs", "2", "--out", str(tmp_path), "--resume", "--depth", "1"],
    )
    assert "was trained with --depth 2" in message


# -- losses, precision, benchmark ---------------------------------------------------------


def test_wce_trains_on_the_multiclass_data(tmp_path):
    history = train.main(
        [*TINY, "--loss", "wce", "--n-classes", "4", "--epochs", "2", "--out", str(tmp_path)]
    )
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(0.0 <= row["dice"] <= 1.0 for row in history)


def test_wce_weights_each_pixel_by_its_balanced_class_weight():
    config = train.parse_config(["--loss", "wce", "--n-train", "16", "--image-size", "32"])
    (_, targets, weights), _, stats = train.make_datasets(config)
    classes = targets.argmax(-1)
    np.testing.assert_allclose(weights, stats["class_weights"][classes], rtol=1e-6)
    # Balanced: every class carries the same total weight.
    totals = [weights[classes == label].sum() for label in range(3)]
    np.testing.assert_allclose(totals, classes.size / 3, rtol=1e-5)


PACKAGE_LOSSES = ["weighted_bce", "dice", "dice_bce", "focal", "tversky", "wce_map", "cost"]


def test_every_loss_choice_is_bce_wce_or_a_package_loss():
    assert set(training.BINARY_LOSSES + training.MULTICLASS_LOSSES) == {"bce", "wce"} | set(
        PACKAGE_LOSSES
    )


def first_steps(argv, steps=2):
    """The script's data, model and loss, and the losses of its first training steps."""
    config = train.parse_config([*TINY, *argv])
    (images, targets, weights), _, stats = train.make_datasets(config)
    with train.precision_policy(config.amp):
        model = train.make_model(config, stats)
        batch = slice(0, config.batch_size)
        weights = None if weights is None else weights[batch]
        losses = [
            float(model.train_on_batch(images[batch], targets[batch], sample_weight=weights))
            for _ in range(steps)
        ]
    return model, losses


@pytest.mark.parametrize("loss", PACKAGE_LOSSES)
def test_each_package_loss_trains(loss):
    # A fit per loss would cost seconds each: two steps on one batch show that the data, the
    # loss and the model fit together and that the loss goes down.
    _, losses = first_steps(["--loss", loss, "--lr", "0.01"])
    assert np.all(np.isfinite(losses))
    assert losses[1] < losses[0]


@pytest.mark.parametrize("loss", ["bce", "wce"])
def test_prior_bias_starts_the_network_at_the_class_prior(loss):
    config = train.parse_config([*TINY, "--loss", loss, "--prior-bias"])
    (_, targets, _), _, stats = train.make_datasets(config)
    model = train.make_model(config, stats)
    if config.binary:
        prior = float(targets.mean())
        expected = [np.log(prior / (1 - prior))]
    else:
        expected = np.log(targets.reshape(-1, config.n_classes).mean(axis=0))
    bias = keras.ops.convert_to_numpy(model.get_layer("head").bias)
    np.testing.assert_allclose(bias, expected, rtol=1e-6)
    default = train.parse_config([*TINY, "--loss", loss])
    untouched = keras.ops.convert_to_numpy(train.make_model(default, stats).get_layer("head").bias)
    assert not np.allclose(untouched, expected, rtol=0.1)


def test_mixed_bfloat16_trains_and_restores_the_policy():
    model, losses = first_steps(["--amp", "bf16"])
    assert model.get_layer("encoders_0_conv1").compute_dtype == "bfloat16"
    assert np.all(np.isfinite(losses))
    assert keras.config.dtype_policy().name == "float32"


def test_benchmark_reports_images_per_second_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    result = train.main([*TINY, "--benchmark", "--benchmark-steps", "2", "--out", str(out)])
    assert result.steps == 2
    assert result.images_per_second == pytest.approx(8 / result.median_step_seconds)
    assert "images/s (median of 2 steps" in capsys.readouterr().out
    assert not out.exists()


# -- your own data: --data ----------------------------------------------------------------


def test_trains_on_a_folder_and_writes_what_prediction_needs(folder, tmp_path):
    history = train.main(
        [*DATA, "--data", str(folder), "--crop", "16", "--epochs", "2", "--out", str(tmp_path)]
    )
    assert [row["epoch"] for row in history] == [1, 2]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["data"] == str(folder) and saved["in_channels"] == 1 and saved["crop"] == 16
    assert saved["normalization"] == folders.NORMALIZATION
    threshold = json.loads((tmp_path / "threshold.json").read_text())
    assert threshold["rule"].startswith("max F1 on validation")
    # What a predictor does: rebuild the U-Net from config.json, load the weights.
    model = train.unet(
        (None, None, saved["in_channels"]),
        out_channels=1,
        base_channels=saved["base_channels"],
        depth=saved["depth"],
    )
    model.load_weights(tmp_path / train.CHECKPOINT, skip_mismatch=False)
    assert model.predict(np.zeros((1, 32, 48, 1), "float32"), verbose=0).shape == (1, 32, 48, 1)


def test_folder_batches_come_in_the_order_of_the_shuffled_batches(folder):
    config = train.parse_config([*DATA, "--data", str(folder)])
    batches, validation, stats = train.make_batches(config)
    in_memory = train.ShuffledBatches((np.zeros((12, 1)), None), 4, config.seed)
    for epoch in (0, 3):
        batches.set_epoch(epoch)
        in_memory.set_epoch(epoch)
        np.testing.assert_array_equal(batches.order, in_memory.order)
    assert (len(batches), len(validation)) == (3, 1)
    images, targets = batches[0]
    assert images.shape == (4, 32, 32, 1) and targets.shape == (4, 32, 32, 1)
    # The split and the statistics are those of the shared pass (the PyTorch script's too).
    assert stats == training.folder_splits(config).stats


def test_multiclass_folder_data_carry_one_hot_targets_and_weight_maps(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, size=(6, 16, 16)).astype(np.uint8)
    write_pairs(tmp_path, images, masks)
    config = train.parse_config(
        [*DATA, "--data", str(tmp_path), "--loss", "wce_map", "--batch-size", "2"]
    )
    batches, _, _ = train.make_batches(config)
    images, targets, weights = batches[0]
    assert images.shape == (2, 16, 16, 3) and config.in_channels == 3
    assert targets.shape == (2, 16, 16, 3) and weights.shape == (2, 16, 16)
    model = train.make_model(config, {"frequencies": [0.3, 0.3, 0.4]})
    assert np.isfinite(float(model.train_on_batch(images, targets, sample_weight=weights)))


@pytest.mark.parametrize("case", ["missing mask", "not labels", "size mismatch"])
def test_bad_input_stops_before_training_naming_the_file(tmp_path, capsys, case):
    named, _ = bad_folder(tmp_path / "data", case)
    argv = [*DATA, "--data", str(tmp_path / "data"), "--batch-size", "2", "--val-fraction", "0.34"]
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"python -m companion.keras.train: error: {named}: ")
    assert BAD_INPUTS[case] in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_run_never_overwrites_a_different_run(folder, tmp_path, capsys):
    argv = [*DATA, "--data", str(folder), "--epochs", "1", "--out", str(tmp_path)]
    train.main(argv)
    capsys.readouterr()
    message = parse_error(capsys, train.parse_config, [*argv, "--augment"])
    assert f"--out {tmp_path} holds another run" in message
    assert "was trained with --augment False" in message


def test_resumed_run_on_a_folder_ends_with_the_weights_of_an_uninterrupted_one(folder, tmp_path):
    argv = [*DATA, "--data", str(folder), "--crop", "16", "--augment"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.main([*argv, "--epochs", "2", "--out", str(straight)])
    train.main([*argv, "--epochs", "1", "--out", str(resumed)])
    train.main([*argv, "--epochs", "2", "--out", str(resumed), "--resume"])
    expected = saved_variables(straight / train.CHECKPOINT)
    variables = saved_variables(resumed / train.CHECKPOINT)
    for name, values in expected.items():
        np.testing.assert_allclose(variables[name], values, rtol=0, atol=1e-6, err_msg=name)
