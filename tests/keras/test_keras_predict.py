"""python -m companion.keras.predict on the current Keras backend: masks and probabilities from
a run of companion.keras.train, the stored threshold, and bad input as one line, status 2.

`make test` runs the Keras tests under KERAS_BACKEND=tensorflow and again under
KERAS_BACKEND=torch. The runs come from 1-epoch trainings on tiny synthetic data.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from companion.folders import read_image
from companion.keras import predict
from companion.keras import train as keras_train
from companion.keras.models import unet

TINY = [
    "--device", "cpu", "--image-size", "32", "--n-train", "16", "--n-val", "8",
    "--batch-size", "8", "--base-channels", "4", "--depth", "2", "--quiet", "--epochs", "1",
]  # fmt: skip


def train_run(out: Path, *argv: str) -> Path:
    """A 1-epoch run of the training script into ``out``; on TensorFlow it trains eagerly
    (tracing costs seconds), as in tests/keras/test_keras_train.py."""
    make_model = keras_train.make_model

    def make_eager_model(config, stats):
        model = make_model(config, stats)
        model.run_eagerly = keras.backend.backend() == "tensorflow"
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras_train, "make_model", make_eager_model)
        keras_train.main([*TINY, *argv, "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("binary"), "--loss", "bce")


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("multiclass"), "--loss", "wce", "--n-classes", "3")


@pytest.fixture
def images(tmp_path) -> Path:
    """An 8-bit PNG of the training size, one of an odd size, a 16-bit TIFF smaller than the
    U-Net's multiple."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (45, 70), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 65536, (3, 5), dtype=np.uint16)).save(folder / "c.tif")
    return folder


def run(*argv) -> list[Path]:
    return predict.main(["--quiet", *map(str, argv)])


def error_of(capsys, *argv) -> str:
    """The one line a bad input writes to stderr as the script exits with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def direct_probabilities(run_folder: Path, image: np.ndarray) -> np.ndarray:
    """The run's U-Net, built for this image's size, on the image: sigmoid or softmax."""
    config = json.loads((run_folder / "config.json").read_text())
    binary = config["loss"] == "bce"
    model = unet(
        image.shape,
        out_channels=1 if binary else config["n_classes"],
        base_channels=config["base_channels"],
        depth=config["depth"],
    )
    model.load_weights(run_folder / "checkpoint.weights.h5")
    logits = np.asarray(model.predict_on_batch(image[None]), dtype=np.float64)[0]
    if binary:
        return 1 / (1 + np.exp(-logits))
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)


def test_every_config_field_has_a_flag_with_help():
    parser = predict.build_parser()
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(actions) == {field.name for field in dataclasses.fields(predict.Config)}
    for name, action in actions.items():
        assert action.help and len(action.help) > 10, name


def test_help_runs_as_a_module(run_module):
    result = run_module("-m", "companion.keras.predict", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m companion.keras.predict [options]")
    for flag in ("--run", "--threshold-from-val", "--overlay", "--tile", "--amp"):
        assert flag in result.stdout


def test_masks_and_probabilities_of_every_image(binary_run, images, tmp_path):
    out = tmp_path / "out"
    written = run(
        "--run", binary_run, "--images", images, "--out", out, "--probabilities", "--overlay"
    )
    assert written == [out / f"{stem}.png" for stem in "abc"]
    for stem in "abc":
        height, width = read_image(next(images.glob(f"{stem}.*"))).shape[:2]
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        probabilities = np.load(out / f"{stem}.npy")
        assert mask.shape == probabilities.shape == (height, width)
        np.testing.assert_array_equal(mask, np.where(probabilities > 0.5, 255, 0))
        with Image.open(out / f"{stem}_overlay.png") as picture:
            assert (picture.mode, picture.size) == ("RGB", (width, height))
    expected = direct_probabilities(binary_run, read_image(images / "a.png"))[..., 0]
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, rtol=1e-5, atol=1e-6)


def test_a_multiclass_model_writes_class_indices(multiclass_run, images, tmp_path):
    run("--run", multiclass_run, "--images", images, "--out", tmp_path, "--probabilities")
    for stem in "abc":
        mask = np.asarray(Image.open(tmp_path / f"{stem}.png"))
        probabilities = np.load(tmp_path / f"{stem}.npy")
        assert mask.dtype == np.uint8 and probabilities.shape == mask.shape + (3,)
        np.testing.assert_array_equal(mask, probabilities.argmax(axis=-1))
    expected = direct_probabilities(multiclass_run, read_image(images / "a.png"))
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, rtol=1e-5, atol=1e-6)


def copy_run(run_folder: Path, tmp_path: Path, threshold: dict | None) -> Path:
    """The run folder with threshold.json replaced by ``threshold`` (None: removed)."""
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    (copy / "threshold.json").unlink(missing_ok=True)
    if threshold is not None:
        (copy / "threshold.json").write_text(json.dumps(threshold))
    return copy


def test_threshold_from_val_uses_threshold_json(binary_run, images, tmp_path, capsys):
    run("--run", binary_run, "--images", images / "b.png", "--out", tmp_path, "--probabilities")
    value = round(float(np.quantile(np.load(tmp_path / "b.npy"), 0.5)), 4)
    stored = copy_run(binary_run, tmp_path, {"value": value, "rule": "recall >= 0.9 on validation"})
    out = tmp_path / "out"
    flags = ["--probabilities", "--threshold-from-val"]
    predict.main(["--run", str(stored), "--images", str(images), "--out", str(out), *flags])
    assert f"threshold {value:.4g}, recall >= 0.9 on validation" in capsys.readouterr().out
    mask = np.asarray(Image.open(out / "b.png"))
    np.testing.assert_array_equal(mask, np.where(np.load(out / "b.npy") > value, 255, 0))
    assert 0 < (mask == 0).mean() < 1


def test_threshold_from_val_without_threshold_json_is_an_error(
    binary_run, images, tmp_path, capsys
):
    stored = copy_run(binary_run, tmp_path, None)
    message = error_of(
        capsys,
        "--run",
        stored,
        "--images",
        images,
        "--out",
        tmp_path / "out",
        "--threshold-from-val",
    )
    assert f"{stored}: no threshold chosen on the validation set is stored" in message


def test_a_multiclass_model_takes_no_threshold(multiclass_run, images, tmp_path, capsys):
    message = error_of(
        capsys, "--run", multiclass_run, "--images", images, "--out", tmp_path, "--threshold", "0.4"
    )
    assert "a multi-class model (3 classes)" in message


def test_refuses_to_write_into_the_input_folder(binary_run, images, capsys):
    before = sorted(images.iterdir())
    message = error_of(capsys, "--run", binary_run, "--images", images, "--out", images)
    assert message == (
        f"python -m companion.keras.predict: error: {images}: the input folder; write the "
        "predictions to another folder (--out)"
    )
    assert sorted(images.iterdir()) == before


def test_an_rgb_image_for_a_grayscale_model_is_named(binary_run, images, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / "e_rgb.png")
    message = error_of(capsys, "--run", binary_run, "--images", images, "--out", tmp_path)
    assert f"{images / 'e_rgb.png'}: 3 channel(s), but {binary_run} takes 1" in message


def test_a_folder_that_is_not_a_run_is_named(images, tmp_path, capsys):
    message = error_of(capsys, "--run", tmp_path, "--images", images, "--out", tmp_path / "out")
    assert f"{tmp_path / 'config.json'}: no such file" in message


def test_a_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--run", "r", "--images", "i", "--out", "o", "--threshold", "2"])
    assert exit_info.value.code == 2
    assert "error: --threshold must be in [0, 1], got 2.0" in capsys.readouterr().err
