"""companion.folders: reading, pairing, splitting, checking and serving a folder of images.

Every folder is written here, in tmp_path, as small PNG, TIFF and .npy files.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from companion import folders, training
from companion.folders import DataError


def write(path: Path, array: np.ndarray) -> Path:
    """``array`` as ``path``: .npy with NumPy, PNG and TIFF with Pillow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def write_pairs(root: Path, images, masks, suffix=".png", mask_suffix=".png") -> None:
    """Images (uint8 or uint16) and masks as ``root/images/NAME`` and ``root/masks/NAME``."""
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        write(root / "images" / f"img{index:03d}{suffix}", image)
        write(root / "masks" / f"img{index:03d}{mask_suffix}", mask)


def random_pairs(n, size=(16, 16), seed=0, n_classes=2):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *size), dtype=np.uint8)
    masks = rng.integers(0, n_classes, size=(n, *size)).astype(np.uint8)
    return images, masks


def scan(train, val, binary=True, n_classes=2, image_size=None, crop=None, multiple=4):
    return folders.scan(
        train,
        val,
        binary=binary,
        n_classes=n_classes,
        image_size=image_size,
        crop=crop,
        multiple=multiple,
    )


# -- reading files ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8_and_16_bit_files_of_one_picture_read_the_same(tmp_path, suffix):
    picture = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    eight = folders.read_image(write(tmp_path / f"eight{suffix}", picture))
    sixteen = folders.read_image(
        write(tmp_path / f"sixteen{suffix}", picture.astype(np.uint16) * 257)
    )
    assert eight.shape == (6, 8, 1) and eight.dtype == np.float32
    np.testing.assert_allclose(eight[..., 0], picture / 255.0, rtol=1e-6)
    np.testing.assert_allclose(sixteen, eight, rtol=1e-6)
    # Pillow keeps all 16 bits: a value between two 8-bit steps survives.
    odd = folders.read_image(write(tmp_path / f"odd{suffix}", np.full((2, 2), 1000, np.uint16)))
    np.testing.assert_allclose(odd, 1000 / 65535, rtol=1e-6)


def test_big_endian_npy_files_and_16_bit_binary_masks(tmp_path):
    values = np.array([[0, 1000], [65535, 7]], dtype=">u2")
    np.testing.assert_allclose(
        folders.read_image(write(tmp_path / "big.npy", values))[..., 0], values / 65535, rtol=1e-6
    )
    images, masks = random_pairs(1, size=(4, 4))
    write_pairs(tmp_path / "data", images, masks.astype(np.uint16) * 65535)
    (sample,) = folders.pair_files(tmp_path / "data")
    np.testing.assert_array_equal(folders.read_sample(sample, True, 2)[1], masks[0])


def write_rgb16_png(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG, written by hand: Pillow cannot write one."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    height, width, _ = array.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_16_bit_rgb_png_reads_at_8_bit_precision(tmp_path):
    # Pillow reduces 16-bit RGB to 8 bits per channel (16-bit grayscale keeps its 16 bits):
    # it keeps the high byte. Save such images as .npy to keep all 16 bits.
    rgb = np.random.default_rng(0).integers(0, 65536, size=(3, 5, 3)).astype(np.uint16)
    write_rgb16_png(tmp_path / "rgb16.png", rgb)
    image = folders.read_image(tmp_path / "rgb16.png")
    assert image.shape == (3, 5, 3)
    np.testing.assert_allclose(image, (rgb >> 8) / 255, rtol=1e-6)


def test_rgb_rgba_and_palette_images_read_as_three_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=-1)
    write(tmp_path / "rgb.png", rgb)
    write(tmp_path / "rgba.png", rgba)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    np.testing.assert_allclose(folders.read_image(tmp_path / "rgb.png"), rgb / 255.0, rtol=1e-6)
    np.testing.assert_allclose(folders.read_image(tmp_path / "rgba.png"), rgb / 255.0, rtol=1e-6)
    assert folders.read_image(tmp_path / "palette.png").shape == (5, 7, 3)


def test_npy_images_keep_float_values_and_read_bool_as_0_1(tmp_path):
    values = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float64)
    np.testing.assert_array_equal(
        folders.read_image(write(tmp_path / "float.npy", values))[..., 0], values.astype(np.float32)
    )
    flags = np.eye(4, dtype=bool)
    np.testing.assert_array_equal(
        folders.read_image(write(tmp_path / "flags.npy", flags))[..., 0], flags
    )


@pytest.mark.parametrize(
    ("name", "array", "problem"),
    [
        ("two.npy", np.zeros((4, 4, 2), np.float32), "shape (4, 4, 2)"),
        ("int64.npy", np.zeros((4, 4), np.int64), "dtype int64"),
        ("nan.npy", np.full((4, 4), np.nan, np.float32), "NaN or infinite values"),
    ],
)
def test_images_that_are_not_images_are_refused(tmp_path, name, array, problem):
    path = write(tmp_path / name, array)
    with pytest.raises(DataError) as error:
        folders.read_image(path)
    assert str(error.value).startswith(f"{path}: {problem}")


def test_labels_may_be_float_npy_of_whole_numbers_or_equal_rgb_channels(tmp_path):
    labels = np.array([[0, 1], [2, 1]])
    np.testing.assert_array_equal(
        folders.read_labels(write(tmp_path / "float.npy", labels.astype(np.float32))), labels
    )
    grey = np.repeat(labels.astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(folders.read_labels(write(tmp_path / "grey.png", grey)), labels)
    with pytest.raises(DataError, match="values that are not whole numbers"):
        folders.read_labels(write(tmp_path / "soft.npy", np.full((2, 2), 0.5)))
    colours = grey.copy()
    colours[0, 0, 1] = 7
    with pytest.raises(DataError, match="3 different channels"):
        folders.read_labels(write(tmp_path / "colour.png", colours))


def test_list_images_sorts_by_name_and_skips_other_files(tmp_path):
    for name in ("b.png", "a.TIF", "c.npy", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [path.name for path in folders.list_images(tmp_path)] == ["a.TIF", "b.png", "c.npy"]


# -- pairing and splitting ----------------------------------------------------------------


def test_pairs_by_stem_across_suffixes_with_the_optional_folders(tmp_path):
    images, masks = random_pairs(3)
    write_pairs(tmp_path, images, masks, suffix=".tif", mask_suffix=".npy")
    for index in range(3):
        write(tmp_path / "instances" / f"img{index:03d}.png", masks[index])
    samples = folders.pair_files(tmp_path)
    assert [sample.stem for sample in samples] == ["img000", "img001", "img002"]
    assert samples[1].image == tmp_path / "images" / "img001.tif"
    assert samples[1].mask == tmp_path / "masks" / "img001.npy"
    assert samples[1].instances == tmp_path / "instances" / "img001.png"
    assert samples[1].weights is None


def test_the_val_folder_is_the_validation_set(tmp_path):
    write_pairs(tmp_path, *random_pairs(4))
    write_pairs(tmp_path / "val", *random_pairs(2, seed=1))
    train, val = folders.split_samples(tmp_path, val_fraction=0.5, seed=0)
    assert len(train) == 4
    assert [sample.image.parent for sample in val] == [tmp_path / "val" / "images"] * 2


def test_val_fraction_holds_out_a_seeded_shuffle_of_the_names(tmp_path):
    write_pairs(tmp_path, *random_pairs(10, size=(4, 4)))
    train, val = folders.split_samples(tmp_path, val_fraction=0.3, seed=0)
    assert len(val) == 3 and len(train) == 7
    assert sorted(train + val, key=lambda sample: sample.stem) == folders.pair_files(tmp_path)
    assert train == sorted(train, key=lambda sample: sample.stem)
    # The same files for the same seed (any process, any run); another seed, another split.
    assert folders.split_samples(tmp_path, 0.3, seed=0) == (train, val)
    stems = {sample.stem for sample in val}
    assert any(
        {sample.stem for sample in folders.split_samples(tmp_path, 0.3, seed=seed)[1]} != stems
        for seed in (1, 2, 3)
    )
    expected = np.random.default_rng(0).permutation(10)[:3]
    assert stems == {f"img{index:03d}" for index in expected}


# -- the validation pass and the statistics -----------------------------------------------


@pytest.mark.parametrize("loss", ["weighted_bce", "wce"])
def test_streaming_statistics_equal_those_of_make_splits(tmp_path, loss):
    options = training.TrainingOptions(loss=loss, image_size=32, n_train=6, n_val=2, batch_size=2)
    train_split, _, expected = training.make_splits(options)
    masks = train_split.targets.astype(np.uint8)
    images = (np.clip(train_split.images, -2, 2) * 60 + 128).astype(np.uint8)
    write_pairs(tmp_path, images, masks)
    samples = folders.pair_files(tmp_path)
    found = scan(samples, [], binary=options.binary, n_classes=options.n_classes)
    assert found.statistics.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(found.statistics[name], value, err_msg=name)


def test_binary_masks_of_0_255_read_as_0_1(tmp_path):
    images, masks = random_pairs(2)
    write_pairs(tmp_path, images, masks * 255)
    samples = folders.pair_files(tmp_path)
    _, labels, _, _ = folders.read_sample(samples[0], binary=True, n_classes=2)
    np.testing.assert_array_equal(labels, masks[0])
    np.testing.assert_allclose(
        scan(samples, []).statistics["frequencies"], [masks.mean()], rtol=1e-12
    )


# -- resize, crop, tiles, augmentation ----------------------------------------------------


def test_resize_is_bilinear_for_images_and_nearest_for_masks(tmp_path):
    images, masks = random_pairs(2, size=(12, 20), n_classes=3)
    write_pairs(tmp_path, images, masks)
    samples = folders.pair_files(tmp_path)
    image, labels, _, _ = folders.read_sample(samples[0], binary=False, n_classes=3, image_size=8)
    assert image.shape == (8, 8, 1) and labels.shape == (8, 8)
    assert set(np.unique(labels)) <= {0, 1, 2}
    # Bilinear (area-averaging as it shrinks): values between the extremes, not only them.
    assert len(np.unique(image)) > 10
    found = scan(samples, [], binary=False, n_classes=3, image_size=8)
    assert found.train_sizes == [(8, 8), (8, 8)]


def test_crops_for_training_and_tiles_for_validation(tmp_path):
    images, masks = random_pairs(2, size=(10, 12))
    write_pairs(tmp_path, images, masks)
    samples = folders.pair_files(tmp_path)
    sizes = [(10, 12)] * 2
    common = {"binary": True, "n_classes": 2, "seed": 0, "crop": 4}
    train = folders.FolderDataset(samples, sizes, training=True, **common)
    assert len(train) == 2
    image, labels, weights = train.item(0, epoch=1)
    assert image.shape == (4, 4, 1) and labels.shape == (4, 4) and weights is None
    np.testing.assert_array_equal(train.item(0, epoch=1)[0], image)  # seeded by the epoch
    assert any(not np.array_equal(train.item(0, epoch)[0], image) for epoch in (2, 3, 4))
    val = folders.FolderDataset(samples, sizes, training=False, **common)
    # Rows at 0, 4, 6 and columns at 0, 4, 8: nine tiles per image, the whole image covered.
    assert folders.tile_origins(10, 4) == [0, 4, 6]
    assert len(val) == 2 * 9
    covered = np.zeros((10, 12), bool)
    for index in range(9):
        tile = val.item(index)[0][..., 0]
        _, top, left = val.items[index]
        np.testing.assert_array_equal(
            tile, images[0][top : top + 4, left : left + 4] / np.float32(255)
        )
        covered[top : top + 4, left : left + 4] = True
    assert covered.all()


def test_augmentation_moves_image_mask_and_weights_together(tmp_path):
    # An asymmetric mask (an L in one corner) whose image and weight map are copies of it:
    # any flip or rotation applied to one and not the others would break the equality.
    mask = np.zeros((8, 8), np.uint8)
    mask[1:6, 1] = 1
    mask[5, 1:4] = 1
    write_pairs(tmp_path, [mask * 255], [mask])
    write(tmp_path / "weights" / "img000.npy", 1.0 + 2.0 * mask.astype(np.float32))
    samples = folders.pair_files(tmp_path)
    data = folders.FolderDataset(
        samples, [(8, 8)], binary=True, n_classes=2, training=True, seed=0, augment=True,
        weights_from_files=True,
    )  # fmt: skip
    seen = set()
    for epoch in range(40):
        image, labels, weights = data.item(0, epoch)
        np.testing.assert_array_equal(image[..., 0], labels)
        np.testing.assert_array_equal(weights, 1.0 + 2.0 * labels)
        seen.add(labels.tobytes())
    assert len(seen) == 8  # the 8 flips and rotations of the square, all reached


def test_augment_keeps_non_square_shapes():
    rng = np.random.default_rng(0)
    arrays = [np.arange(12).reshape(3, 4), None]
    for _ in range(10):
        out = folders.augment(arrays, rng)
        assert out[0].shape == (3, 4) and out[1] is None


# -- bad input: one line naming the file ----------------------------------------------------


def bad_folder(tmp_path: Path, case: str) -> tuple[Path, dict]:
    """A folder with one problem, the file the message must name, and scan's options."""
    images, masks = random_pairs(3, size=(8, 8))
    write_pairs(tmp_path, images, masks)
    options = {}
    if case == "missing mask":
        named = tmp_path / "images" / "img001.png"
        (tmp_path / "masks" / "img001.png").unlink()
    elif case == "missing image":
        named = tmp_path / "masks" / "img002.png"
        (tmp_path / "images" / "img002.png").unlink()
    elif case == "size mismatch":
        named = write(tmp_path / "masks" / "img001.png", np.zeros((8, 12), np.uint8))
    elif case == "not labels":
        named = write(
            tmp_path / "masks" / "img002.png",
            np.array([[0, 128], [255, 0]], np.uint8).repeat(4, 0).repeat(4, 1),
        )
    elif case == "class out of range":
        named = write(tmp_path / "masks" / "img000.png", np.full((8, 8), 3, np.uint8))
        options = {"binary": False, "n_classes": 3}
    elif case == "empty file":
        named = tmp_path / "images" / "img001.png"
        named.write_bytes(b"")
    elif case == "unreadable file":
        named = tmp_path / "masks" / "img000.png"
        named.write_bytes(b"not a PNG at all")
    elif case == "empty folder":
        named = tmp_path / "masks"
        for path in named.iterdir():
            path.unlink()
    return named, options


BAD_INPUTS = {
    "missing mask": "no mask",
    "missing image": "no image",
    "size mismatch": "size 12x8, but its image img001.png is 8x8",
    "not labels": "mask values 0, 128, 255; a binary mask holds 0/1 or 0/255",
    "class out of range": "class index 3 >= --n-classes 3",
    "empty file": "empty file",
    "unreadable file": "unreadable image",
    "empty folder": "no image files",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_each_bad_input_names_its_file(tmp_path, case):
    named, options = bad_folder(tmp_path, case)
    with pytest.raises(DataError) as error:
        train, val = folders.split_samples(tmp_path, val_fraction=0.34, seed=0)
        scan(train, val, **options)
    message = str(error.value)
    assert message.startswith(f"{named}: ")
    assert BAD_INPUTS[case] in message
    assert "\n" not in message


def test_images_of_different_sizes_need_resize_or_crop(tmp_path):
    write_pairs(tmp_path, *random_pairs(2, size=(8, 8)))
    odd = write(tmp_path / "images" / "img001.png", np.zeros((12, 8), np.uint8))
    write(tmp_path / "masks" / "img001.png", np.zeros((12, 8), np.uint8))
    samples = folders.pair_files(tmp_path)
    with pytest.raises(
        DataError, match="8x12, but img000.png is 8x8; use --image-size or --crop"
    ) as error:
        scan(samples, [])
    assert str(error.value).startswith(str(odd))
    assert scan(samples, [], image_size=8).train_sizes == [(8, 8)] * 2
    assert scan(samples, [], crop=8).train_sizes == [(8, 8), (12, 8)]
    with pytest.raises(DataError, match="is smaller than --crop 12"):
        scan(samples, [], crop=12)
    with pytest.raises(DataError, match="8x8 is not a multiple of 2\\*\\*depth = 16"):
        scan(samples[:1], [], multiple=16)


def test_the_contract_names_exist():
    assert folders.IMAGE_SUFFIXES == (".png", ".tif", ".tiff", ".npy")
    assert issubclass(folders.DataError, ValueError)
    assert "uint16 / 65535" in folders.NORMALIZATION
    assert dataclasses.is_dataclass(folders.Sample)


# -- the decision threshold (companion.training.choose_threshold) --------------------------


def test_the_threshold_maximises_f1_or_reaches_a_target():
    # Four bins: probabilities in [0, .25), [.25, .5), [.5, .75), [.75, 1].
    positives, negatives = [1, 1, 2, 6], [50, 4, 2, 1]
    # At 0.5: tp 8, fp 3, fn 2 -> F1 16 / 21; at 0.75: tp 6, fp 1, fn 4 -> 12 / 17, less.
    assert training.choose_threshold(positives, negatives) == {
        "value": 0.5,
        "rule": "max F1 on validation (F1 0.762)",
    }
    # Precision 6 / 7 at 0.75, 8 / 11 at 0.5: the lowest threshold reaching 0.8 is 0.75.
    assert training.choose_threshold(positives, negatives, target_precision=0.8)["value"] == 0.75
    # Recall 0.9 at 0.25, 0.8 at 0.5: the highest threshold keeping 0.9 is 0.25.
    chosen = training.choose_threshold(positives, negatives, target_recall=0.9)
    assert chosen == {"value": 0.25, "rule": "recall >= 0.9 on validation (precision 0.562)"}
    unreachable = training.choose_threshold(positives, negatives, target_precision=0.99)
    assert unreachable["value"] == 0.75
    assert "not reached, highest precision 0.857" in unreachable["rule"]
    assert training.choose_threshold([0, 0], [3, 4])["value"] == 0.5  # no positives at all
