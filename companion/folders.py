"""A folder of your own images and masks, for the training scripts' ``--data DIR``.

The layout::

    DIR/images/    the images: PNG, TIFF (8- or 16-bit, grayscale or RGB) or .npy
    DIR/masks/     one label image per image, paired by the file name without its suffix
    DIR/instances/ optional: instance labels, for the U-Net border weight map (wce_map)
    DIR/weights/   optional: precomputed weight maps (wce_map), float .npy or TIFF
    DIR/val/       optional: the validation set, with the same sub-folders

Without ``DIR/val``, a fraction of the pairs is held out for validation by a seeded shuffle of
the sorted file names (:func:`split_samples`), the same for any number of processes. Before
training, :func:`scan` reads every file once: it names the first bad file in a
:class:`DataError` (a missing partner, a size mismatch, values that are not labels, an empty or
unreadable file, an empty folder) and counts the classes of the training masks in the same
pass (:class:`ClassCounts`). :class:`FolderDataset` then reads the pairs lazily, one item at a
time, resized (``--image-size``), cropped or tiled (``--crop``) and augmented (``--augment``).

Images are normalised as :data:`NORMALIZATION` says; masks are integer label images. Pillow
reads PNG and TIFF (the one Matplotlib installs); nothing here imports a deep-learning
framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "NORMALIZATION",
    "ClassCounts",
    "DataError",
    "FolderDataset",
    "Sample",
    "ScanResult",
    "augment",
    "class_statistics",
    "list_images",
    "pair_files",
    "read_image",
    "read_labels",
    "read_sample",
    "read_weights",
    "resize",
    "scan",
    "split_samples",
    "tile_origins",
]

#: The suffixes of the files that :func:`list_images` takes (lower case; ``.PNG`` counts too).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy")

#: How :func:`read_image` turns a file into float32 values; stored with every checkpoint.
NORMALIZATION = (
    "images as float32 (H, W, C), C = 1 (grayscale) or 3 (RGB; RGBA and palette images "
    "converted to RGB): uint8 / 255, uint16 / 65535, bool as 0/1, float .npy and float TIFF "
    "as stored"
)


class DataError(ValueError):
    """A bad input file or folder; the message is one line, ``"<path>: <problem>"``."""


# -- reading files ------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    """The files of ``folder`` with a suffix in :data:`IMAGE_SUFFIXES`, sorted by name.

    Hidden files (a leading dot, such as macOS's ``._name.png``) are skipped.

    Raises:
        DataError: if ``folder`` is not a folder or holds no such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_array(path: Path, labels: bool) -> np.ndarray:
    """The values stored in ``path``, as NumPy gives them; Pillow's modes mapped to dtypes.

    Palette images are converted to RGB for images (``labels=False``) and kept as their
    indices for label images; RGBA to RGB, grayscale with alpha to grayscale.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file")
    except OSError as error:
        raise DataError(f"{path}: unreadable ({error.strerror})") from None
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: unreadable .npy file ({_one_line(error)})") from None
        return _native(array, path, from_pillow=False)
    from PIL import Image

    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise DataError(f"{path}: {image.n_frames} frames; one image per file")
            if image.mode == "P" and not labels or image.mode in ("RGBA", "CMYK", "YCbCr", "PA"):
                image = image.convert("RGB")
            elif image.mode == "LA":
                image = image.convert("L")
            array = np.asarray(image)
    except DataError:
        raise
    except Exception as error:  # Pillow raises many kinds for a damaged file
        raise DataError(f"{path}: unreadable image ({_one_line(error)})") from None
    return _native(array, path, from_pillow=True)


def _native(array: np.ndarray, path: Path, from_pillow: bool) -> np.ndarray:
    """``array`` in the machine's byte order (16-bit TIFFs and .npy files may be big-endian);
    Pillow's 32-bit integers (mode "I", which holds some 16-bit files) as uint16."""
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if from_pillow and array.dtype == np.int32:
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise DataError(f"{path}: 32-bit integer values outside 0 .. 65535")
        array = array.astype(np.uint16)
    return array


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def read_image(path: Path) -> np.ndarray:
    """An image file as float32 ``(H, W, C)``, normalised as :data:`NORMALIZATION` says.

    ``C`` is 1 for grayscale and 3 for RGB; RGBA and palette images become RGB. 8- and 16-bit
    files of one picture give the same values (to 8-bit precision): ``uint8 / 255``,
    ``uint16 / 65535``; bool gives 0 and 1; float ``.npy`` (and float TIFF) as stored.
    Pillow keeps the 16 bits of grayscale PNG and TIFF files, but reads 16-bit RGB files as
    8-bit (their high byte): save such images as ``.npy`` to keep every bit.

    Raises:
        DataError: for an empty or unreadable file, a 2-channel image, another shape or
            another dtype.
    """
    array = _read_array(path, labels=False)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise DataError(f"{path}: shape {array.shape}; an image is (H, W), (H, W, 1) or (H, W, 3)")
    if array.shape[-1] == 4:  # an RGBA .npy: drop the alpha channel, as for PNG
        array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: NaN or infinite values")
        return array.astype(np.float32)
    raise DataError(f"{path}: dtype {array.dtype}; images are uint8, uint16, bool or float")


def read_labels(path: Path) -> np.ndarray:
    """A label image (mask or instance map) as int64 ``(H, W)``.

    Integer and bool files are taken as they are; float files (``.npy``) only if every value
    is a whole number; an RGB file only if its three channels are equal (a grayscale label
    image saved as RGB). Palette PNGs give their palette indices.

    Raises:
        DataError: for an empty or unreadable file, several distinct channels, negative or
            fractional values.
    """
    array = _read_array(path, labels=True)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        channels = array[..., :3] if array.shape[-1] > 1 else array
        if not np.all(channels == channels[..., :1]):
            raise DataError(
                f"{path}: {channels.shape[-1]} different channels; a label image has one"
            )
        array = channels[..., 0]
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"{path}: shape {array.shape}; a label image is (H, W)")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise DataError(f"{path}: values that are not whole numbers; labels are integers")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise DataError(f"{path}: dtype {array.dtype}; labels are integers")
    labels = array.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: negative value {labels.min()}; labels are >= 0")
    return labels


def read_weights(path: Path) -> np.ndarray:
    """A weight map as float32 ``(H, W)``: the stored values, finite and >= 0 (a float
    ``.npy`` or TIFF; integer files are taken as their values, not normalised)."""
    array = _read_array(path, labels=True)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"{path}: shape {array.shape}; a weight map is (H, W)")
    weights = array.astype(np.float32)
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise DataError(f"{path}: weights must be finite and >= 0")
    return weights


def _binary_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """A binary mask stored as 0/1 or as 0/255, as 0/1."""
    values = np.unique(labels)
    if set(values.tolist()) <= {0, 1}:
        return labels
    for high in (255, 65535):  # 8- and 16-bit black and white
        if set(values.tolist()) <= {0, high}:
            return labels // high
    shown = ", ".join(str(value) for value in values[:6]) + (", ..." if len(values) > 6 else "")
    raise DataError(f"{path}: mask values {shown}; a binary mask holds 0/1 or 0/255")


def _class_labels(labels: np.ndarray, path: Path, n_classes: int) -> np.ndarray:
    if labels.max() >= n_classes:
        raise DataError(
            f"{path}: class index {labels.max()} >= --n-classes {n_classes} (indices 0 .. "
            f"{n_classes - 1})"
        )
    return labels


# -- pairing and splitting ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    """The files of one image: the image, its mask, and its instance labels and weight map
    where the folder has them."""

    stem: str
    image: Path
    mask: Path
    instances: Path | None = None
    weights: Path | None = None


def _by_stem(folder: Path) -> dict[str, Path]:
    files = {}
    for path in list_images(folder):
        if path.stem in files:
            raise DataError(f"{path}: a second file named {path.stem} (beside {files[path.stem]})")
        files[path.stem] = path
    return files


def pair_files(root: Path) -> list[Sample]:
    """The samples of ``root/images`` and ``root/masks`` (and of ``root/instances`` and
    ``root/weights`` where they exist), paired by file name without suffix, sorted.

    Raises:
        DataError: for a missing or empty folder, or a file without its partner.
    """
    root = Path(root)
    images = _by_stem(root / "images")
    partners = {"mask": _by_stem(root / "masks")}
    for name in ("instances", "weights"):
        if (root / name).is_dir():
            partners[name] = _by_stem(root / name)
    for name, files in partners.items():
        folder = root / ("masks" if name == "mask" else name)
        for stem, path in images.items():
            if stem not in files:
                raise DataError(f"{path}: no {name} {folder / stem}.* beside it")
        for stem, path in files.items():
            if stem not in images:
                raise DataError(f"{path}: no image {root / 'images' / stem}.* for it")
    return [
        Sample(
            stem,
            path,
            partners["mask"][stem],
            partners["instances"][stem] if "instances" in partners else None,
            partners["weights"][stem] if "weights" in partners else None,
        )
        for stem, path in images.items()
    ]


def split_samples(root: Path, val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """The training and the validation samples of ``root``.

    With ``root/val/images``, the validation set is ``root/val`` (the training set all of
    ``root``); else ``round(val_fraction * n)`` (at least 1) of the ``n`` pairs, the first of
    a permutation of the sorted names by ``numpy.random.default_rng(seed)``: the same files
    on every process and machine. Both lists are sorted by name.

    Raises:
        DataError: for a bad folder (:func:`pair_files`), a validation folder without the
            ``weights`` folder the training folder has, or too few pairs to split.
    """
    root = Path(root)
    samples = pair_files(root)
    if (root / "val").is_dir():
        val = pair_files(root / "val")
        if samples[0].weights is not None and val[0].weights is None:
            raise DataError(
                f"{root / 'val' / 'weights'}: no such folder, but {root / 'weights'} is"
            )
        return samples, val
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"{root}: no val/ folder, so --val-fraction must be in (0, 1)")
    n_val = max(1, round(val_fraction * len(samples)))
    if n_val >= len(samples):
        raise DataError(
            f"{root}: {len(samples)} pairs are too few to hold out --val-fraction {val_fraction}"
        )
    held_out = set(np.random.default_rng(seed).permutation(len(samples))[:n_val].tolist())
    train = [sample for index, sample in enumerate(samples) if index not in held_out]
    val = [sample for index, sample in enumerate(samples) if index in held_out]
    return train, val


# -- class statistics ---------------------------------------------------------------------


class ClassCounts:
    """Pixel counts per class, added one label map at a time, and the statistics the losses
    take from them (:meth:`statistics`)."""

    def __init__(self, n_classes: int):
        self.counts = np.zeros(n_classes, dtype=np.int64)

    def add(self, labels: np.ndarray) -> None:
        """Count the pixels of one label map (class indices in ``[0, n_classes)``)."""
        self.counts += np.bincount(
            np.asarray(labels).ravel().astype(np.intp), minlength=len(self.counts)
        )

    def statistics(self, binary: bool) -> dict:
        """``frequencies`` (the positive fraction for binary masks, else each class's share);
        ``pos_weight`` (negatives / positives, binary); ``class_weights`` (balanced,
        ``pixels / (n_classes * count)``, 0 for an absent class; multi-class).

        The formulas of :func:`companion.training.make_splits` and of
        :func:`companion.weightmaps.balanced_class_weights` on the stacked masks."""
        pixels = int(self.counts.sum())
        if binary:
            positives = float(self.counts[1])
            return {
                "pos_weight": (pixels - positives) / max(positives, 1.0),
                "frequencies": np.array([positives / pixels]),
            }
        weights = np.zeros(len(self.counts))
        present = self.counts > 0
        weights[present] = pixels / (len(self.counts) * self.counts[present])
        return {"class_weights": weights, "frequencies": self.counts / pixels}


def class_statistics(label_maps: Iterable[np.ndarray], n_classes: int, binary: bool) -> dict:
    """:meth:`ClassCounts.statistics` of label maps counted one at a time (2 classes for
    binary masks of 0 and 1)."""
    counts = ClassCounts(2 if binary else n_classes)
    for labels in label_maps:
        counts.add(labels)
    return counts.statistics(binary)


# -- resizing, cropping, augmenting -------------------------------------------------------


def resize(array: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    """``array`` (``(H, W)`` or ``(H, W, C)``) resized to ``size x size`` with Pillow:
    bilinear for images (``nearest=False``, float32), nearest for labels and weight maps."""
    from PIL import Image

    if array.shape[:2] == (size, size):
        return array
    if array.ndim == 3:
        return np.stack([resize(array[..., c], size, nearest) for c in range(array.shape[-1])], -1)
    if nearest:
        mode = np.int32 if np.issubdtype(array.dtype, np.integer) else np.float32
        picture = Image.fromarray(array.astype(mode))
        return np.asarray(picture.resize((size, size), Image.Resampling.NEAREST)).astype(
            array.dtype
        )
    picture = Image.fromarray(array.astype(np.float32), mode="F")
    return np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR))


def tile_origins(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``: every ``tile`` pixels,
    and the last one flush with the end (so it may overlap the one before)."""
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def augment(arrays: Sequence[np.ndarray | None], rng: np.random.Generator) -> list:
    """The same random flip and 90-degree rotation applied to every array (image ``(H, W,
    C)``, mask, instance map, weight map ``(H, W)``; None passes through).

    A left-right flip with probability 1/2, then a rotation by 0, 90, 180 or 270 degrees;
    for a non-square shape only 0 or 180, so that the shapes of a batch stay equal.
    """
    flip = bool(rng.integers(2))
    height, width = next(array for array in arrays if array is not None).shape[:2]
    quarter_turns = int(rng.integers(4)) if height == width else 2 * int(rng.integers(2))
    out = []
    for array in arrays:
        if array is not None:
            if flip:
                array = array[:, ::-1]
            array = np.ascontiguousarray(np.rot90(array, quarter_turns, axes=(0, 1)))
        out.append(array)
    return out


# -- the validation pass ------------------------------------------------------------------


@dataclasses.dataclass
class ScanResult:
    """What :func:`scan` found: the channels of the images, the size (H, W) of each sample
    after ``--image-size``, and the class statistics of the training masks."""

    channels: int
    train_sizes: list[tuple[int, int]]
    val_sizes: list[tuple[int, int]]
    statistics: dict


def read_sample(
    sample: Sample, binary: bool, n_classes: int, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(image, labels, instances or None, weights or None)`` of a sample, checked and
    resized to ``image_size`` (if given); binary masks as 0/1.

    Raises:
        DataError: for a bad file, a size mismatch or bad mask values.
    """
    image = read_image(sample.image)
    labels = read_labels(sample.mask)
    size = image.shape[:2]
    extras = [read_labels(sample.instances) if sample.instances else None]
    extras.append(read_weights(sample.weights) if sample.weights else None)
    for path, array in (
        (sample.mask, labels),
        (sample.instances, extras[0]),
        (sample.weights, extras[1]),
    ):
        if array is not None and array.shape[:2] != size:
            raise DataError(
                f"{path}: size {array.shape[1]}x{array.shape[0]}, but its image "
                f"{sample.image.name} is {size[1]}x{size[0]} (width x height)"
            )
    if binary:
        labels = _binary_labels(labels, sample.mask)
    else:
        labels = _class_labels(labels, sample.mask, n_classes)
    if image_size is not None:
        image = resize(image, image_size, nearest=False)
        labels = resize(labels, image_size, nearest=True)
        extras = [
            None if array is None else resize(array, image_size, nearest=True) for array in extras
        ]
    return image, labels, extras[0], extras[1]


def scan(
    train: Sequence[Sample],
    val: Sequence[Sample],
    *,
    binary: bool,
    n_classes: int,
    image_size: int | None,
    crop: int | None,
    multiple: int,
) -> ScanResult:
    """Read every file once, check it, and count the classes of the training masks.

    Checks, naming the first bad file: each file is readable (:func:`read_image`,
    :func:`read_labels`, :func:`read_weights`), each mask (and instance and weight map) has
    its image's size, mask values are labels (binary: 0/1 or 0/255; multi-class: below
    ``n_classes``), every image has the channels of the first; without ``image_size`` and
    ``crop``, every image has one size, a multiple of ``multiple`` (the U-Net's ``2**depth``);
    with ``crop``, every image (after ``image_size``) is at least ``crop`` pixels each way.

    Raises:
        DataError: the first problem found, ``"<file>: <problem>"``.
    """
    counts = ClassCounts(2 if binary else n_classes)
    first: tuple[Path, np.ndarray] | None = None
    sizes: dict[bool, list] = {True: [], False: []}
    for training, samples in ((True, train), (False, val)):
        for sample in samples:
            image, labels, _, _ = read_sample(sample, binary, n_classes, image_size)
            if first is None:
                first = (sample.image, image)
            elif image.shape[-1] != first[1].shape[-1]:
                raise DataError(
                    f"{sample.image}: {image.shape[-1]} channel(s), but {first[0].name} has "
                    f"{first[1].shape[-1]}; convert the images to one kind"
                )
            height, width = image.shape[:2]
            if crop is not None and (height < crop or width < crop):
                raise DataError(f"{sample.image}: {width}x{height} is smaller than --crop {crop}")
            if crop is None and image_size is None:
                if image.shape[:2] != first[1].shape[:2]:
                    raise DataError(
                        f"{sample.image}: {width}x{height}, but {first[0].name} is "
                        f"{first[1].shape[1]}x{first[1].shape[0]}; use --image-size or --crop"
                    )
                if height % multiple or width % multiple:
                    raise DataError(
                        f"{sample.image}: {width}x{height} is not a multiple of 2**depth = "
                        f"{multiple}; use --image-size or --crop"
                    )
            sizes[training].append((height, width))
            if training:
                counts.add(labels)
    return ScanResult(first[1].shape[-1], sizes[True], sizes[False], counts.statistics(binary))


# -- the lazy data set --------------------------------------------------------------------


class FolderDataset:
    """The samples of a split, read from disk one item at a time, framework-free.

    ``item(index, epoch)`` returns ``(image (H, W, C) float32, labels (H, W) int64, weight
    map (H, W) float32 or None)``. For training (``training=True``) item ``index`` is sample
    ``index``, randomly cropped (``crop``) and augmented (``augment``) by a generator seeded
    with ``(seed, epoch, index)``: the same item whichever process or worker reads it. For
    validation, with ``crop``, the items are the tiles of every sample
    (:func:`tile_origins`), else the samples; never augmented.

    ``weight_map(labels, instances=instances)`` computes the weight map of a sample without a
    weights file (``wce_map``), before cropping, so that the border distances are the whole image's;
    None: no weight maps.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        sizes: Sequence[tuple[int, int]],
        *,
        binary: bool,
        n_classes: int,
        training: bool,
        seed: int = 0,
        image_size: int | None = None,
        crop: int | None = None,
        augment: bool = False,
        weight_map: Callable[..., np.ndarray] | None = None,
        weights_from_files: bool = False,
    ):
        self.samples = list(samples)
        self.binary, self.n_classes = binary, n_classes
        self.training, self.seed = training, seed
        self.image_size, self.crop, self.augment = image_size, crop, augment
        self.weight_map, self.weights_from_files = weight_map, weights_from_files
        if training or crop is None:
            self.items = [(index, 0, 0) for index in range(len(self.samples))]
        else:
            self.items = [
                (index, top, left)
                for index, (height, width) in enumerate(sizes)
                for top in tile_origins(height, crop)
                for left in tile_origins(width, crop)
            ]

    def __len__(self) -> int:
        return len(self.items)

    def item(self, index: int, epoch: int = 0):
        sample_index, top, left = self.items[index]
        image, labels, instances, weights = read_sample(
            self.samples[sample_index], self.binary, self.n_classes, self.image_size
        )
        if not self.weights_from_files:
            weights = None
            if self.weight_map is not None:
                weights = self.weight_map(labels, instances=instances).astype(np.float32)
        arrays = [image, labels, weights]
        if self.training and (self.crop is not None or self.augment):
            rng = np.random.default_rng([self.seed, epoch, sample_index])
            if self.crop is not None:
                height, width = labels.shape
                top = int(rng.integers(height - self.crop + 1))
                left = int(rng.integers(width - self.crop + 1))
            if self.augment:
                arrays = augment([_window(array, top, left, self.crop) for array in arrays], rng)
                return tuple(arrays)
        return tuple(_window(array, top, left, self.crop) for array in arrays)


def _window(array, top: int, left: int, size: int | None):
    if array is None or size is None:
        return array
    return array[top : top + size, left : left + size]
