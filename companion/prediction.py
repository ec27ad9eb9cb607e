"""What ``python -m companion.torch.predict`` and ``python -m companion.keras.predict`` share.

The part of the two predict scripts that does not depend on the framework, as
:mod:`companion.training` is for the training scripts: the shared flags
(:class:`PredictOptions`), what a script needs to know of a trained model
(:class:`TrainedModel`), and :func:`predict_images`: the input and output folders, the
threshold, the tiles (:func:`companion.tiling.predict_tiled`) and the files written per image.
Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from companion.folders import (
    IMAGE_SUFFIXES,
    NORMALIZATION,
    DataError,
    list_images,
    read_image,
    resize,
)
from companion.tiling import predict_tiled
from companion.training import BINARY_LOSSES, option

__all__ = ["PredictOptions", "TrainedModel", "check_options", "overlay", "predict_images"]


@dataclasses.dataclass
class PredictOptions:
    """The options both predict scripts take; each script's ``Config`` adds where the model
    comes from and its system options."""

    images: str = option(
        None,
        "required: an image file or a folder of them (" + ", ".join(IMAGE_SUFFIXES) + "), "
        "read as the training scripts read --data (companion.folders.read_image)",
        "input and output",
        type=str,
        required=True,
    )
    out: str = option(
        None,
        "required: the output folder, created if needed, never the input folder; per image "
        "STEM: STEM.png, the mask (0/255 for a binary model, class indices for a multi-class "
        "one), replacing an earlier one",
        "input and output",
        type=str,
        required=True,
    )
    threshold: float | None = option(
        None,
        "binary models: a pixel is positive where its probability is > THRESHOLD; None: 0.5",
        "decision",
        type=float,
    )
    threshold_from_val: bool = option(
        False,
        "binary models: the threshold the training chose on its validation set (maximum F1, "
        "or the --target-precision / --target-recall it was given), stored with the model",
        "decision",
    )
    probabilities: bool = option(
        False,
        "also write STEM.npy, the probabilities as float32: (H, W) of the positive class "
        "(binary), (H, W, classes) (multi-class)",
        "outputs",
    )
    overlay: bool = option(
        False,
        "also write STEM_overlay.png: the image in gray, the predicted classes over it in "
        "translucent colours",
        "outputs",
    )
    tile: int | None = option(
        None,
        "tiles of TILE x TILE pixels, a multiple of 2**depth; 0: the whole image at once; "
        "None: the size the model trained on (--crop, else --image-size; the whole image for "
        "a model trained on --data at its own size)",
        "tiling",
        type=int,
    )
    overlap: int | None = option(
        None,
        "pixels shared by neighbouring tiles, a multiple of 2**depth; each pixel is taken from "
        "the tile whose centre is nearest; None: a quarter of the tile, rounded down to a "
        "multiple of 2**depth",
        "tiling",
        type=int,
    )
    batch_size: int = option(8, "tiles per forward pass", "tiling")
    quiet: bool = option(False, "no progress bar and no summary lines", "outputs")


def check_options(parser: argparse.ArgumentParser, options: PredictOptions) -> None:
    """The checks that need no model; a failure exits via ``parser.error``."""
    if options.threshold is not None and options.threshold_from_val:
        parser.error("--threshold and --threshold-from-val exclude each other")
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {options.threshold}")
    if options.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if options.tile is not None and options.tile < 0:
        parser.error("--tile must be >= 0")
    if options.overlap is not None and options.overlap < 0:
        parser.error("--overlap must be >= 0")


@dataclasses.dataclass
class TrainedModel:
    """What a predict script needs to know of a trained model, framework-free.

    Attributes:
        source: the checkpoint or run folder, named in messages.
        config: the training configuration (a ``Config`` as a dictionary); checkpoints from
            before ``--data`` lack ``data`` and ``in_channels`` (synthetic, one channel).
        threshold: ``{"value": float, "rule": str}`` chosen on the validation set at the end
            of training (binary models), or None.
        normalization: how the training read its images (:data:`companion.folders.NORMALIZATION`),
            or None for a model trained on the synthetic data only.
    """

    source: Path
    config: dict
    threshold: dict | None = None
    normalization: str | None = None

    @property
    def binary(self) -> bool:
        return self.config["loss"] in BINARY_LOSSES

    @property
    def in_channels(self) -> int:
        return self.config.get("in_channels") or 1

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else self.config["n_classes"]

    @property
    def multiple(self) -> int:
        return 2 ** self.config["depth"]

    @property
    def resize_to(self) -> int | None:
        """The side the training resized its --data images to (``--image-size``), or None."""
        if self.config.get("data"):
            return self.config.get("image_size")
        return None

    @property
    def training_tile(self) -> int | None:
        """The size the network trained on: ``--crop``, else the synthetic images'
        ``--image-size``; None for whole images (``--data`` without ``--crop``)."""
        if self.config.get("crop"):
            return self.config["crop"]
        if self.config.get("data"):
            return None
        return self.config["image_size"]


def _fail(message: str) -> None:
    raise DataError(message)


def _inputs(images: Path) -> tuple[list[Path], Path]:
    """The image files to predict and the folder they are in."""
    if images.is_file():
        if images.suffix.lower() not in IMAGE_SUFFIXES:
            _fail(f"{images}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
        return [images], images.parent
    if not images.exists():
        _fail(f"{images}: no such file or folder")
    files = list_images(images)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            _fail(f"{path}: a second image named {path.stem} (beside {stems[path.stem].name})")
        stems[path.stem] = path
    return files, images


def _tiling(options: PredictOptions, trained: TrainedModel) -> tuple[int | None, int]:
    """``(tile or None, overlap)``: the options, or the defaults from the training."""
    multiple = trained.multiple
    tile = trained.training_tile if options.tile is None else options.tile or None
    if tile is not None and tile % multiple:
        if options.tile is not None:
            _fail(f"--tile {tile}: not a multiple of 2**depth = {multiple} ({trained.source})")
        tile = max(multiple, tile // multiple * multiple)
    if options.overlap is not None:
        overlap = options.overlap
    else:
        overlap = 0 if tile is None else tile // 4 // multiple * multiple
    if overlap % multiple or (tile is not None and overlap >= tile):
        _fail(
            f"--overlap {overlap}: must be a multiple of 2**depth = {multiple} below the tile "
            f"({tile}) for {trained.source}"
        )
    return tile, overlap


def _threshold(options: PredictOptions, trained: TrainedModel) -> tuple[float | None, str]:
    """The threshold of a binary model and where it comes from; None for a multi-class one."""
    if not trained.binary:
        if options.threshold is not None or options.threshold_from_val:
            _fail(
                f"{trained.source}: a multi-class model ({trained.out_channels} classes), whose "
                "pixels take their most probable class; --threshold and --threshold-from-val "
                "are for binary models"
            )
        return None, "the most probable class"
    if options.threshold_from_val:
        if not trained.threshold:
            _fail(
                f"{trained.source}: no threshold chosen on the validation set is stored (a run "
                "from before it was stored, or one without --epochs done); give --threshold"
            )
        value = float(trained.threshold["value"])
        return value, f"threshold {value:.4g}, {trained.threshold['rule']}"
    value = 0.5 if options.threshold is None else options.threshold
    return value, f"threshold {value:.4g}"


def _resize_back(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """Probabilities ``(h, w, K)`` resized bilinearly to ``height x width`` with Pillow."""
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize(
                    (width, height), Image.Resampling.BILINEAR
                )
            )
            for channel in np.moveaxis(probabilities, -1, 0)
        ],
        axis=-1,
    )


def overlay(
    image: np.ndarray, classes: np.ndarray, n_classes: int, alpha: float = 0.45
) -> np.ndarray:
    """``image`` ``(H, W, C)`` in gray (the mean of its channels, stretched to its own minimum
    and maximum) with every pixel of class ``c >= 1`` in ``classes`` ``(H, W)`` tinted by
    colour ``c - 1`` of Matplotlib's ``tab10`` (binary masks, ``n_classes=2``: class 1 in
    red), as uint8 RGB ``(H, W, 3)``; ``alpha`` is the colour's weight.

    Example:
        >>> picture = overlay(np.zeros((2, 2, 1)), np.array([[0, 1], [0, 0]]), n_classes=2)
        >>> picture[0, 0].tolist(), picture[0, 1].tolist()
        ([0, 0, 0], [96, 18, 18])
    """
    from matplotlib import colormaps

    gray = image.mean(axis=-1)
    low, high = float(gray.min()), float(gray.max())
    gray = (gray - low) / (high - low) if high > low else np.zeros_like(gray)
    picture = np.repeat(gray[..., None], 3, axis=-1)
    palette = np.asarray(colormaps["tab10"].colors)
    for label in range(1, n_classes):
        colour = palette[3] if n_classes == 2 else palette[(label - 1) % len(palette)]
        where = classes == label
        picture[where] = (1 - alpha) * picture[where] + alpha * colour
    return np.round(255 * picture).astype(np.uint8)


def predict_images(
    options: PredictOptions,
    trained: TrainedModel,
    predict_batch: Callable[[np.ndarray], np.ndarray],
) -> list[Path]:
    """Predict every image of ``options.images`` and write its files to ``options.out``.

    Each image is read with :func:`companion.folders.read_image`, resized to the training's
    ``--image-size`` if the model trained on resized ``--data`` images (and its probabilities
    resized back), predicted in tiles (:func:`~companion.tiling.predict_tiled`) by
    ``predict_batch`` (tiles ``(N, h, w, C)`` float32 to probabilities ``(N, h, w, K)``), and
    its mask thresholded (binary) or its most probable class taken (multi-class).

    Returns:
        The masks written, one per image, in the order of the file names.

    Raises:
        DataError: with one line, before anything is written for the image concerned: no
            such input, ``--out`` is the input folder, an unreadable image, an image whose
            channels are not the model's, a bad ``--tile`` or ``--overlap``, a threshold
            option the model cannot take.
    """
    from PIL import Image
    from tqdm import tqdm

    files, folder = _inputs(Path(options.images))
    out = Path(options.out)
    if out.resolve() == folder.resolve():
        _fail(f"{out}: the input folder; write the predictions to another folder (--out)")
    if out.exists() and not out.is_dir():
        _fail(f"{out}: a file, not a folder (--out)")
    tile, overlap = _tiling(options, trained)
    threshold, decision = _threshold(options, trained)
    if trained.normalization is not None and trained.normalization != NORMALIZATION:
        print(
            f"warning: {trained.source} read its images as '{trained.normalization}'; "
            f"these are read as '{NORMALIZATION}'",
            file=sys.stderr,
        )
    if not options.quiet:
        pieces = "whole images" if tile is None else f"tiles of {tile}x{tile}, overlap {overlap}"
        resized = f", resized to {trained.resize_to}x{trained.resize_to}" * bool(trained.resize_to)
        print(f"{len(files)} image(s) from {options.images}: {pieces}{resized}, {decision}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(files, desc="predict", unit="image", disable=True if options.quiet else None):
        image = read_image(path)
        if image.shape[-1] != trained.in_channels:
            _fail(
                f"{path}: {image.shape[-1]} channel(s), but {trained.source} takes "
                f"{trained.in_channels}; convert the image (grayscale or RGB) first"
            )
        height, width = image.shape[:2]
        work = resize(image, trained.resize_to, nearest=False) if trained.resize_to else image
        probabilities = predict_tiled(
            work,
            predict_batch,
            multiple=trained.multiple,
            tile=tile,
            overlap=overlap,
            batch_size=options.batch_size,
        ).astype(np.float32)
        if probabilities.shape[:2] != (height, width):
            probabilities = _resize_back(probabilities, height, width)
        if trained.binary:
            classes = (probabilities[..., 0] > threshold).astype(np.uint8)
            mask = classes * np.uint8(255)
        else:
            classes = probabilities.argmax(axis=-1)
            mask = classes.astype(np.uint8 if trained.out_channels <= 256 else np.uint16)
        Image.fromarray(mask).save(out / f"{path.stem}.png")
        written.append(out / f"{path.stem}.png")
        if options.probabilities:
            np.save(
                out / f"{path.stem}.npy", probabilities[..., 0] if trained.binary else probabilities
            )
        if options.overlay:
            Image.fromarray(overlay(image, classes, max(2, trained.out_channels))).save(
                out / f"{path.stem}_overlay.png"
            )
    if not options.quiet:
        print(f"wrote {len(written)} mask(s) to {out}")
    return written
