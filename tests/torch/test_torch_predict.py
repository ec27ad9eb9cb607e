"""python -m companion.torch.predict: masks, probabilities and overlays from a checkpoint of
companion.torch.train, the stored threshold, and every bad input as one line with status 2.

The checkpoints come from 1-epoch runs of the training script on tiny synthetic data (about
a second each); the images are written here with Pillow.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from companion.folders import read_image
from companion.torch import predict
from companion.torch import train as torch_train
from companion.torch.models import UNet

# The tiny run of tests/torch/test_torch_train.py: 32x32 images, a U-Net of depth 2.
TINY = [
    "--device", "cpu", "--image-size", "32", "--n-train", "16", "--n-val", "8",
    "--batch-size", "8", "--base-channels", "4", "--depth", "2", "--quiet", "--epochs", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("binary")
    torch_train.main([*TINY, "--loss", "bce", "--out", str(out)])
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multiclass")
    torch_train.main([*TINY, "--loss", "wce", "--n-classes", "3", "--out", str(out)])
    return out / "checkpoint.pt"


@pytest.fixture
def images(tmp_path) -> Path:
    """Grayscale images: 8-bit PNGs of the training size and of odd sizes, a 16-bit TIFF
    smaller than the U-Net's multiple, a .npy."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (45, 70), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 65536, (3, 5), dtype=np.uint16)).save(folder / "c.tif")
    np.save(folder / "d.npy", rng.uniform(size=(40, 24)).astype(np.float32))
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


def direct_probabilities(checkpoint: Path, image: np.ndarray) -> np.ndarray:
    """The U-Net of ``checkpoint`` on one image whose sides are multiples of 4, sigmoid or
    softmax, channels last: what the script must give for an image of the training size."""
    saved = torch.load(checkpoint, weights_only=True)
    config = saved["config"]
    binary = config["loss"] == "bce"
    net = UNet(1, 1 if binary else config["n_classes"], config["base_channels"], config["depth"])
    net.load_state_dict(saved["model"])
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(np.moveaxis(image, -1, 0)[None].copy()))
    probabilities = torch.sigmoid(logits) if binary else torch.softmax(logits, dim=1)
    return probabilities[0].permute(1, 2, 0).numpy()


# -- the command line ---------------------------------------------------------------------


def test_every_config_field_has_a_flag_with_help():
    parser = predict.build_parser()
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(actions) == {field.name for field in dataclasses.fields(predict.Config)}
    for name, action in actions.items():
        assert action.help and len(action.help) > 10, name
        assert action.option_strings == ["--" + name.replace("_", "-")]


def test_help_runs_as_a_module(run_module):
    result = run_module("-m", "companion.torch.predict", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m companion.torch.predict [options]")
    for flag in ("--checkpoint", "--threshold-from-val", "--overlay", "--tile", "--amp"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "0.3", "--threshold-from-val"], "exclude each other"),
        (["--threshold", "1.5"], "--threshold must be in [0, 1], got 1.5"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs CUDA"),
    ],
)
def test_bad_flags_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", "c.pt", "--images", "x", "--out", "y", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# -- predictions --------------------------------------------------------------------------


def test_masks_probabilities_and_overlays_of_every_image(binary_run, images, tmp_path):
    out = tmp_path / "out"
    written = run(
        "--checkpoint", binary_run, "--images", images, "--out", out, "--probabilities", "--overlay"
    )
    assert written == [out / f"{stem}.png" for stem in "abcd"]
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted(
        f"{stem}{suffix}" for stem in "abcd" for suffix in (".png", ".npy", "_overlay.png")
    )
    for stem in "abcd":
        height, width = read_image(next(images.glob(f"{stem}.*"))).shape[:2]
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        probabilities = np.load(out / f"{stem}.npy")
        assert mask.shape == probabilities.shape == (height, width)
        assert mask.dtype == np.uint8 and probabilities.dtype == np.float32
        np.testing.assert_array_equal(mask, np.where(probabilities > 0.5, 255, 0))
        assert 0 <= probabilities.min() <= probabilities.max() <= 1
        with Image.open(out / f"{stem}_overlay.png") as picture:
            assert (picture.mode, picture.size) == ("RGB", (width, height))


def test_an_image_of_the_training_size_gets_the_networks_own_probabilities(
    binary_run, images, tmp_path
):
    run(
        "--checkpoint",
        binary_run,
        "--images",
        images / "a.png",
        "--out",
        tmp_path,
        "--probabilities",
    )
    expected = direct_probabilities(binary_run, read_image(images / "a.png"))[..., 0]
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, rtol=1e-6, atol=1e-7)


def test_a_large_image_is_tiled_at_the_training_size(binary_run, tmp_path, capsys):
    image = np.random.default_rng(1).uniform(size=(100, 90)).astype(np.float32)
    np.save(tmp_path / "big.npy", image)
    predict.main(
        [
            "--checkpoint",
            str(binary_run),
            "--images",
            str(tmp_path / "big.npy"),
            "--out",
            str(tmp_path / "out"),
            "--probabilities",
        ]
    )
    # The training size (--image-size 32), a quarter of it as overlap.
    assert "tiles of 32x32, overlap 8" in capsys.readouterr().out
    # The top-left pixels come from the first tile, which is the network on that corner.
    corner = direct_probabilities(binary_run, image[:32, :32, None])[..., 0]
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "big.npy")[:20, :20], corner[:20, :20], rtol=1e-6, atol=1e-7
    )


def test_a_multiclass_model_writes_class_indices(multiclass_run, images, tmp_path):
    run(
        "--checkpoint",
        multiclass_run,
        "--images",
        images,
        "--out",
        tmp_path / "out",
        "--probabilities",
        "--overlay",
    )
    for stem in "abcd":
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png"))
        probabilities = np.load(tmp_path / "out" / f"{stem}.npy")
        assert mask.dtype == np.uint8 and probabilities.shape == mask.shape + (3,)
        np.testing.assert_array_equal(mask, probabilities.argmax(axis=-1))
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1, rtol=1e-5)
    expected = direct_probabilities(multiclass_run, read_image(images / "a.png"))
    np.testing.assert_allclose(np.load(tmp_path / "out" / "a.npy"), expected, rtol=1e-6, atol=1e-7)


def test_an_rgb_model_takes_rgb_images(tmp_path):
    # A checkpoint of a model trained on RGB --data, written by hand with the contract's keys.
    torch.manual_seed(0)
    config = dataclasses.asdict(torch_train.parse_config(TINY))
    config.update(in_channels=3, data="somewhere", image_size=None)
    checkpoint = tmp_path / "rgb.pt"
    torch.save({"model": UNet(3, 1, 4, 2).state_dict(), "config": config}, checkpoint)
    rgb = np.random.default_rng(2).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    run(
        "--checkpoint",
        checkpoint,
        "--images",
        tmp_path / "rgb.png",
        "--out",
        tmp_path / "out",
        "--probabilities",
    )
    assert np.load(tmp_path / "out" / "rgb.npy").shape == (20, 28)


def test_a_model_trained_on_resized_images_predicts_resized_images(binary_run, tmp_path, capsys):
    saved = torch.load(binary_run, weights_only=True)
    saved["config"].update(data="somewhere", image_size=32)
    torch.save(saved, tmp_path / "resized.pt")
    Image.fromarray(np.full((50, 60), 128, dtype=np.uint8)).save(tmp_path / "flat.png")
    predict.main(
        [
            "--checkpoint",
            str(tmp_path / "resized.pt"),
            "--images",
            str(tmp_path / "flat.png"),
            "--out",
            str(tmp_path / "out"),
            "--probabilities",
        ]
    )
    assert "whole images, resized to 32x32" in capsys.readouterr().out
    probabilities = np.load(tmp_path / "out" / "flat.npy")
    assert probabilities.shape == (50, 60)
    # A flat image stays flat when resized: its probabilities are those of a flat 32x32 one.
    flat = direct_probabilities(binary_run, np.full((32, 32, 1), 128 / 255, dtype=np.float32))
    np.testing.assert_allclose(probabilities.mean(), flat.mean(), rtol=1e-3)


# -- the threshold ------------------------------------------------------------------------


def with_threshold(checkpoint: Path, tmp_path: Path, threshold: dict | None) -> Path:
    saved = torch.load(checkpoint, weights_only=True)
    saved.pop("threshold", None)
    if threshold is not None:
        saved["threshold"] = threshold
    path = tmp_path / "with_threshold.pt"
    torch.save(saved, path)
    return path


@pytest.mark.parametrize("quantile", [0.25, 0.75])
def test_threshold_from_val_uses_the_stored_threshold(
    binary_run, images, tmp_path, capsys, quantile
):
    # A threshold inside the range of this image's probabilities, so the mask has both values.
    run(
        "--checkpoint",
        binary_run,
        "--images",
        images / "b.png",
        "--out",
        tmp_path,
        "--probabilities",
    )
    value = round(float(np.quantile(np.load(tmp_path / "b.npy"), quantile)), 4)
    stored = {"value": value, "rule": "max F1 on validation"}
    checkpoint = with_threshold(binary_run, tmp_path, stored)
    out = tmp_path / "out"
    flags = ["--probabilities", "--threshold-from-val"]
    predict.main(
        ["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out), *flags]
    )
    assert f"threshold {value:.4g}, max F1 on validation" in capsys.readouterr().out
    probabilities = np.load(out / "b.npy")
    mask = np.asarray(Image.open(out / "b.png"))
    np.testing.assert_array_equal(mask, np.where(probabilities > value, 255, 0))
    assert 0 < (mask == 0).mean() < 1


def test_an_explicit_threshold(binary_run, images, tmp_path):
    run(
        "--checkpoint",
        binary_run,
        "--images",
        images / "b.png",
        "--out",
        tmp_path,
        "--probabilities",
        "--threshold",
        "0.45",
    )
    probabilities = np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "b.png")), np.where(probabilities > 0.45, 255, 0)
    )


def test_threshold_from_val_without_a_stored_threshold_is_an_error(
    binary_run, images, tmp_path, capsys
):
    checkpoint = with_threshold(binary_run, tmp_path, None)
    message = error_of(
        capsys,
        "--checkpoint",
        checkpoint,
        "--images",
        images,
        "--out",
        tmp_path / "out",
        "--threshold-from-val",
    )
    assert f"{checkpoint}: no threshold chosen on the validation set is stored" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--threshold", "0.5"], ["--threshold-from-val"]])
def test_a_multiclass_model_takes_no_threshold(multiclass_run, images, tmp_path, capsys, flag):
    message = error_of(
        capsys, "--checkpoint", multiclass_run, "--images", images, "--out", tmp_path / "out", *flag
    )
    assert "a multi-class model (3 classes)" in message


# -- bad input ----------------------------------------------------------------------------


def test_refuses_to_write_into_the_input_folder(binary_run, images, capsys):
    before = sorted(images.iterdir())
    message = error_of(capsys, "--checkpoint", binary_run, "--images", images, "--out", images)
    assert f"{images}: the input folder" in message
    # One file as --images: its folder is the input folder.
    message = error_of(
        capsys, "--checkpoint", binary_run, "--images", images / "a.png", "--out", images / "."
    )
    assert "the input folder" in message
    assert sorted(images.iterdir()) == before


def test_refusal_is_one_line_and_status_2_from_the_command_line(binary_run, images, run_module):
    result = run_module(
        "-m",
        "companion.torch.predict",
        "--checkpoint",
        str(binary_run),
        "--images",
        str(images),
        "--out",
        str(images),
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m companion.torch.predict: error: {images}: the input folder; write the "
        "predictions to another folder (--out)"
    ]


def test_an_rgb_image_for_a_grayscale_model_is_named(binary_run, images, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / "e_rgb.png")
    message = error_of(capsys, "--checkpoint", binary_run, "--images", images, "--out", tmp_path)
    assert message.endswith(
        f"{images / 'e_rgb.png'}: 3 channel(s), but {binary_run} takes 1; convert the image "
        "(grayscale or RGB) first"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty file"), (b"not a png at all", "unreadable image")],
)
def test_an_unreadable_image_is_named(binary_run, images, tmp_path, capsys, content, problem):
    (images / "broken.png").write_bytes(content)
    message = error_of(capsys, "--checkpoint", binary_run, "--images", images, "--out", tmp_path)
    assert f"{images / 'broken.png'}: {problem}" in message


def test_a_missing_or_broken_checkpoint_is_named(images, tmp_path, capsys):
    message = error_of(
        capsys, "--checkpoint", tmp_path / "none.pt", "--images", images, "--out", tmp_path / "out"
    )
    assert (
        message
        == f"python -m companion.torch.predict: error: {tmp_path / 'none.pt'}: no such checkpoint"
    )
    (tmp_path / "broken.pt").write_bytes(b"garbage")
    message = error_of(
        capsys,
        "--checkpoint",
        tmp_path / "broken.pt",
        "--images",
        images,
        "--out",
        tmp_path / "out",
    )
    assert f"{tmp_path / 'broken.pt'}: not a readable checkpoint" in message


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--tile", "30"], "--tile 30: not a multiple of 2**depth = 4"),
        (
            ["--tile", "32", "--overlap", "32"],
            "--overlap 32: must be a multiple of 2**depth = 4 below the tile (32)",
        ),
    ],
)
def test_bad_tiles_for_the_model_are_named(binary_run, images, tmp_path, capsys, argv, problem):
    message = error_of(
        capsys, "--checkpoint", binary_run, "--images", images, "--out", tmp_path / "out", *argv
    )
    assert problem in message


def test_missing_images_and_empty_folders_are_named(binary_run, tmp_path, capsys):
    message = error_of(
        capsys, "--checkpoint", binary_run, "--images", tmp_path / "none", "--out", tmp_path / "out"
    )
    assert f"{tmp_path / 'none'}: no such file or folder" in message
    (tmp_path / "empty").mkdir()
    message = error_of(
        capsys,
        "--checkpoint",
        binary_run,
        "--images",
        tmp_path / "empty",
        "--out",
        tmp_path / "out",
    )
    assert f"{tmp_path / 'empty'}: no image files" in message


def test_two_images_with_one_stem_are_refused(binary_run, images, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(images / "a.tif")
    message = error_of(
        capsys, "--checkpoint", binary_run, "--images", images, "--out", tmp_path / "out"
    )
    assert "a second image named a" in message
