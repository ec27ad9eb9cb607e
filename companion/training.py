"""What the PyTorch and the Keras training scripts share, framework-free.

The scripts (``python -m companion.torch.train`` and ``python -m companion.keras.train``)
declare their options as a dataclass of defaults (:func:`option`), build their command
line from it (:func:`build_parser`) and check it (:func:`check_common_options`,
:func:`check_same_run`, :func:`check_new_run`), train the same losses on the same data
(:func:`make_splits`, or the files of ``--data``: :func:`folder_splits`), write the same
outputs (:data:`METRIC_COLUMNS`, :func:`plot_curves`, the decision threshold of
:func:`choose_threshold`) and time their training step the same way (:func:`time_steps`).
Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from companion.data import small_targets, touching_shapes
from companion.folders import DataError, FolderDataset, class_statistics, scan, split_samples
from companion.weightmaps import unet_weight_map

__all__ = [
    "BINARY_LOSSES",
    "MULTICLASS_LOSSES",
    "METRICS",
    "CURVES",
    "METRIC_COLUMNS",
    "MUST_MATCH_ON_RESUME",
    "THRESHOLD_BINS",
    "BenchmarkResult",
    "FolderSplits",
    "HelpFormatter",
    "Split",
    "TrainingOptions",
    "build_parser",
    "check_common_options",
    "check_new_run",
    "check_same_run",
    "choose_threshold",
    "cost_matrix",
    "derived",
    "describe_statistics",
    "exit_with_data_error",
    "folder_splits",
    "make_splits",
    "option",
    "plain_statistics",
    "plot_curves",
    "prior_bias",
    "replace_durably",
    "summarize",
    "time_steps",
]

#: The ``--loss`` values of binary segmentation (trained on small_targets, one output channel).
BINARY_LOSSES = ("bce", "weighted_bce", "dice", "dice_bce", "focal", "tversky")
#: The ``--loss`` values of multi-class segmentation (trained on touching_shapes).
MULTICLASS_LOSSES = ("wce", "wce_map", "cost")

#: The per-epoch metrics file in ``--out``, one row of :data:`METRIC_COLUMNS` per epoch.
METRICS = "metrics.csv"
#: The plot of the metrics in ``--out``, drawn by :func:`plot_curves` at the end of a run.
CURVES = "curves.png"
#: The columns of ``metrics.csv``, one row per epoch; the scores on the validation set are
#: pooled over its pixels and macro-averaged over the non-background classes.
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "dice", "iou", "precision", "recall")
#: The options that build the data, the model and the optimizer, which a resumed run must
#: share with the run it continues (:func:`check_same_run`).
MUST_MATCH_ON_RESUME = (
    "loss", "optimizer", "batch_size", "lr", "image_size", "n_train", "n_val", "n_classes", "seed",
    "base_channels", "depth", "prior_bias", "pos_weight", "focal_gamma", "tversky_alpha",
    "tversky_beta", "w0", "sigma", "miss_cost", "data", "val_fraction", "crop", "augment",
)  # fmt: skip
#: The bins of the validation set's predicted probabilities from which :func:`choose_threshold`
#: picks the decision threshold of a binary model: thresholds in steps of 1 / THRESHOLD_BINS.
THRESHOLD_BINS = 1000


def option(default, help: str, group: str, **argparse_kwargs):
    """A configuration field: its default, and its --help text and group for argparse."""
    return dataclasses.field(
        default=default, metadata={"help": help, "group": group, **argparse_kwargs}
    )


def derived(default, help: str):
    """A configuration field that the script sets from the data, not from a flag (it is
    stored with the run, like the options)."""
    return dataclasses.field(default=default, metadata={"help": help, "derived": True})


@dataclasses.dataclass
class TrainingOptions:
    """The options both training scripts take: loss, schedule, data, model, loss parameters.

    Each script's ``Config`` subclasses this and adds its system and output options.
    """

    loss: str = option(
        "bce",
        "the loss; bce, weighted_bce, dice, dice_bce, focal and tversky train on small_targets "
        "(binary), wce, wce_map and cost on touching_shapes (multi-class)",
        "training",
        choices=BINARY_LOSSES + MULTICLASS_LOSSES,
    )
    epochs: int = option(10, "total number of epochs (also when resuming)", "training")
    optimizer: str = option(
        "adam", "Adam, or SGD with momentum 0.9", "training", choices=("adam", "sgd")
    )
    lr: float = option(1e-3, "learning rate", "training")
    seed: int = option(0, "seed of the data, the initial weights and the shuffling", "training")
    data: str | None = option(
        None,
        "a folder of your own images and masks: DATA/images and DATA/masks (PNG, TIFF or .npy, "
        "paired by file name), optional DATA/instances and DATA/weights (wce_map), optional "
        "DATA/val for the validation set; default: the synthetic data",
        "data",
        type=str,
    )
    image_size: int | None = option(
        None,
        "height and width of the images, a multiple of 2**depth; with --data, resize every "
        "image to it (bilinear; masks and weight maps nearest); default: 64 for the synthetic "
        "data, the files' own size with --data",
        "data",
        type=int,
    )
    crop: int | None = option(
        None,
        "--data: train on random crops of this size (a multiple of 2**depth), validate on tiles "
        "of it covering each image (the last tile of a row or column flush with the edge)",
        "data",
        type=int,
    )
    augment: bool = option(
        False,
        "--data: random left-right flips and 90-degree rotations of the training items, the "
        "same for image, mask and weight map (180 only for non-square items)",
        "data",
    )
    val_fraction: float = option(
        0.2,
        "--data without DATA/val: the fraction of the pairs held out for validation, chosen "
        "by a shuffle of the sorted file names seeded with --seed",
        "data",
    )
    n_train: int = option(512, "number of training images (seed --seed; synthetic data)", "data")
    n_val: int = option(
        128, "number of validation images (seed --seed + 1; synthetic data)", "data"
    )
    n_classes: int = option(3, "classes of the multi-class data, background included", "data")
    base_channels: int = option(16, "channels of the U-Net's first level", "model")
    depth: int = option(4, "number of poolings of the U-Net", "model")
    prior_bias: bool = option(
        False,
        "start the output bias at the class prior of the training masks: log(pi / (1 - pi)) "
        "for the binary losses (pi: the positive fraction), the log of each class's frequency "
        "for the multi-class ones (Lin et al., 2017); default: the framework's initialization",
        "model",
    )
    in_channels: int = derived(
        1, "channels of the images: 1 for the synthetic data, the files' (1 or 3) with --data"
    )
    pos_weight: float | None = option(
        None,
        "weighted_bce: weight of the positive pixels; None: negatives / positives of the "
        "training masks",
        "loss parameters",
        type=float,
    )
    focal_gamma: float = option(2.0, "focal: the focusing exponent gamma", "loss parameters")
    tversky_alpha: float = option(0.3, "tversky: weight of false positives", "loss parameters")
    tversky_beta: float = option(0.7, "tversky: weight of false negatives", "loss parameters")
    w0: float = option(10.0, "wce_map: border weight w0 of the U-Net weight map", "loss parameters")
    sigma: float = option(5.0, "wce_map: border width sigma in pixels", "loss parameters")
    miss_cost: float = option(
        5.0,
        "cost: cost of labelling an object pixel as background (every other pixel costs 1)",
        "loss parameters",
    )
    batch_size: int = option(
        16,
        "global batch size: under torchrun split evenly across the processes, under Keras's "
        "tf.distribute strategies across the GPUs and the workers",
        "training",
    )
    target_precision: float | None = option(
        None,
        "binary losses: the decision threshold stored at the end of training is the lowest "
        "whose precision on the validation set reaches this (default: the one of maximal F1)",
        "evaluation",
        type=float,
    )
    target_recall: float | None = option(
        None,
        "binary losses: the stored threshold is the highest whose recall on the validation set "
        "reaches this",
        "evaluation",
        type=float,
    )

    def __post_init__(self):
        if self.image_size is None and self.data is None:
            self.image_size = 64

    @property
    def binary(self) -> bool:
        return self.loss in BINARY_LOSSES

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else self.n_classes


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, and the script's docstring as it is written."""


def _plain_text(docstring: str) -> str:
    r"""A docstring as a terminal shows it: no double back-quotes, ``::`` read as ``:``.

    >>> _plain_text("Train a model::\n\n    run it\n\nIn ``--out``: files.")
    'Train a model:\n\n    run it\n\nIn --out: files.'
    """
    return re.sub(r"::$", ":", docstring.replace("``", ""), flags=re.MULTILINE)


def build_parser(config_class, prog: str, description: str) -> argparse.ArgumentParser:
    """The command-line parser of a training script, one flag per field of ``config_class``.

    Each field is declared with :func:`option`; booleans become ``store_true`` flags,
    other fields take a value of their default's type. Abbreviated flags are refused, so a
    mistyped option is an error rather than a silent match. ``description`` is the script's
    docstring, which the API reference also renders: its reStructuredText markup (double
    back-quotes around literals, a line ending in ``::`` before a code block) is shown plain.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=_plain_text(description),
        usage="%(prog)s [options]",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    groups = {}
    for field in dataclasses.fields(config_class):
        kwargs = dict(field.metadata)
        if kwargs.pop("derived", False):
            continue
        group_name = kwargs.pop("group")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            groups[group_name].add_argument(flag, action="store_true", **kwargs)
        else:
            kwargs.setdefault("type", type(field.default))
            groups[group_name].add_argument(flag, default=field.default, **kwargs)
    return parser


def check_common_options(parser: argparse.ArgumentParser, config: TrainingOptions) -> None:
    """The checks of the :class:`TrainingOptions` fields of a parsed ``config``; a failure exits
    via ``parser.error``."""
    for name in ("epochs", "batch_size", "n_train", "n_val", "base_channels", "depth"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not config.lr > 0:
        parser.error("--lr must be > 0")
    if config.n_classes < 2:
        parser.error("--n-classes must be >= 2 (the background and at least one class)")
    for name in ("image_size", "crop"):
        size = getattr(config, name)
        if size is not None and (size < 1 or size % 2**config.depth):
            parser.error(
                f"--{name.replace('_', '-')} {size} must be a multiple of 2**depth = "
                f"{2**config.depth}"
            )
    if config.data is None:
        for name in ("crop", "augment"):
            if getattr(config, name):
                parser.error(f"--{name} applies to --data only")
    elif not Path(config.data).is_dir():
        parser.error(f"--data {config.data}: no such folder")
    if config.target_precision is not None and config.target_recall is not None:
        parser.error("--target-precision and --target-recall exclude each other")
    for name in ("target_precision", "target_recall"):
        value = getattr(config, name)
        if value is not None and not 0.0 < value <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1]")
        if value is not None and not config.binary:
            parser.error(f"--{name.replace('_', '-')} applies to the binary losses only")
    if config.data is None and config.n_train < config.batch_size:
        parser.error(
            f"--n-train {config.n_train} must hold at least one batch ({config.batch_size})"
        )


def check_same_run(
    parser: argparse.ArgumentParser,
    config: TrainingOptions,
    saved: dict,
    source: str | Path,
    must_match: tuple[str, ...] = MUST_MATCH_ON_RESUME,
) -> None:
    """Exit via ``parser.error`` unless ``config`` continues the run whose configuration
    ``saved`` (read from ``source``, named in the message) is: the same value of every option
    in ``must_match``."""
    changed = _changed(config, saved, must_match)
    if changed:
        parser.error(f"--resume: {source} was trained with {changed}")


def _changed(config: TrainingOptions, saved: dict, must_match: tuple[str, ...]) -> str:
    """The options of ``must_match`` whose saved value differs, as flags (empty if none);
    a saved configuration from before an option existed counts as its default."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    changed = [
        name for name in must_match if saved.get(name, defaults[name]) != getattr(config, name)
    ]
    return ", ".join(
        f"--{name.replace('_', '-')} {saved.get(name, defaults[name])}" for name in changed
    )


def check_new_run(
    parser: argparse.ArgumentParser,
    config: TrainingOptions,
    saved: dict,
    source: str | Path,
    must_match: tuple[str, ...] = MUST_MATCH_ON_RESUME,
) -> None:
    """Exit with status 2 and one line (:func:`exit_with_data_error`) if a run without
    ``--resume`` would overwrite the output of a different run: ``saved`` (read from
    ``source``) differs from ``config`` in an option of ``must_match``. The same run again may
    start afresh in its own folder."""
    changed = _changed(config, saved, must_match)
    if changed:
        exit_with_data_error(
            parser.prog,
            f"--out {Path(source).parent} holds another run ({source} was trained with "
            f"{changed}): choose another --out, or continue that run with --resume",
        )


@dataclasses.dataclass
class Split:
    """The images of a training or validation set and their targets, as NumPy arrays.

    ``images`` are ``(N, H, W)`` float32; ``targets`` the binary masks, ``(N, H, W)`` float32,
    or the class index of each pixel, ``(N, H, W)`` int32; ``weight_maps`` the U-Net weight
    map of each image (``wce_map`` only, else None), ``(N, H, W)`` float32.
    """

    images: np.ndarray
    targets: np.ndarray
    weight_maps: np.ndarray | None = None


def make_splits(config: TrainingOptions) -> tuple[Split, Split, dict]:
    """The training and validation sets of ``config`` (seeds ``config.seed`` and
    ``config.seed + 1``), and the statistics the losses take from the training set.

    Binary losses train on :func:`~companion.data.small_targets`, the others on
    :func:`~companion.data.touching_shapes`. The statistics: ``frequencies``, the positive
    fraction (binary) or each class's share of the pixels, for ``--prior-bias``;
    ``pos_weight``, negatives over positives (binary); ``class_weights``, the balanced
    weight of each class (multi-class), which the ``wce_map`` weight maps include.
    """
    stats = {}
    splits = []
    for n, seed in ((config.n_train, config.seed), (config.n_val, config.seed + 1)):
        if config.binary:
            images, masks = small_targets(n, size=config.image_size, seed=seed)
            if not stats:
                stats = class_statistics(masks.astype(np.intp), 2, binary=True)
            splits.append(Split(images, masks))
            continue
        images, classes, instances = touching_shapes(
            n, size=config.image_size, n_classes=config.n_classes, seed=seed
        )
        if not stats:
            stats = class_statistics(classes, config.n_classes, binary=False)
        weight_maps = None
        if config.loss == "wce_map":
            weight_maps = np.stack(
                [
                    unet_weight_map(
                        class_map,
                        instances=instance_map,
                        w0=config.w0,
                        sigma=config.sigma,
                        class_weights=stats["class_weights"],
                    )
                    for class_map, instance_map in zip(classes, instances, strict=True)
                ]
            ).astype(np.float32)
        splits.append(Split(images, classes, weight_maps))
    return splits[0], splits[1], stats


@dataclasses.dataclass
class FolderSplits:
    """The training and validation sets of ``--data``, read lazily, and what the validation
    pass found: the class statistics of the training masks and the images' channels."""

    train: FolderDataset
    val: FolderDataset
    stats: dict
    channels: int


def folder_splits(config: TrainingOptions) -> FolderSplits:
    """Pair, split and check the files of ``config.data`` (:func:`companion.folders.scan`,
    one pass over every file), and the lazy data sets of the split.

    ``wce_map`` takes its weight maps from ``DATA/weights`` where that folder exists (as they
    are stored), else computes the U-Net weight map of each item from its mask (and its
    instance labels, ``DATA/instances``) with the balanced class weights of the training
    masks, as :func:`make_splits` does for the synthetic data.

    Raises:
        companion.folders.DataError: the first bad file or folder, or a training set
            smaller than one batch.
    """
    root = Path(config.data)
    train, val = split_samples(root, config.val_fraction, config.seed)
    found = scan(
        train,
        val,
        binary=config.binary,
        n_classes=config.n_classes,
        image_size=config.image_size,
        crop=config.crop,
        multiple=2**config.depth,
    )
    if len(train) < config.batch_size:
        raise DataError(
            f"{root}: {len(train)} training images, fewer than one batch "
            f"(--batch-size {config.batch_size})"
        )
    from_files = config.loss == "wce_map" and train[0].weights is not None
    weight_map = None
    if config.loss == "wce_map" and not from_files:
        weight_map = functools.partial(
            unet_weight_map,
            w0=config.w0,
            sigma=config.sigma,
            class_weights=found.statistics["class_weights"],
        )
    common = {
        "binary": config.binary,
        "n_classes": config.n_classes,
        "seed": config.seed,
        "image_size": config.image_size,
        "crop": config.crop,
        "weight_map": weight_map,
        "weights_from_files": from_files,
    }
    return FolderSplits(
        FolderDataset(train, found.train_sizes, training=True, augment=config.augment, **common),
        FolderDataset(val, found.val_sizes, training=False, **common),
        found.statistics,
        found.channels,
    )


def exit_with_data_error(prog: str, error: DataError | str):
    """Stop a script on bad data (or a refused ``--out``): one line on stderr, ``PROG: error:
    <file>: <problem>``, and exit status 2 (that of a usage error)."""
    print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def plain_statistics(stats: dict) -> dict:
    """The class statistics with plain floats and lists (for JSON and ``torch.load(...,
    weights_only=True)``)."""
    return {
        name: np.asarray(value, dtype=np.float64).tolist() if np.ndim(value) else float(value)
        for name, value in stats.items()
    }


def describe_statistics(stats: dict, binary: bool) -> str:
    """One line on the class statistics of the training masks.

    >>> describe_statistics({"frequencies": [0.01], "pos_weight": 99.0}, binary=True)
    'training masks: positive fraction 0.01, pos_weight 99'
    """
    if binary:
        return (
            f"training masks: positive fraction {stats['frequencies'][0]:.4g}, "
            f"pos_weight {stats['pos_weight']:.4g}"
        )
    frequencies = ", ".join(f"{value:.4g}" for value in stats["frequencies"])
    weights = ", ".join(f"{value:.4g}" for value in stats["class_weights"])
    return f"training masks: class frequencies {frequencies}; balanced class weights {weights}"


def cost_matrix(n_classes: int, miss_cost: float) -> np.ndarray:
    """``cost[true, predicted]``: ``miss_cost`` for an object pixel labelled background
    (column 0, rows 1 ..), 1 everywhere else, the diagonal included.

    The cost multiplies each pixel's cross-entropy, so a zero on the diagonal would give
    correctly classified pixels no loss and no gradient: they could drift back across the
    decision boundary unopposed. Ones keep plain cross-entropy there.

    Example:
        >>> cost_matrix(3, miss_cost=5.0).tolist()
        [[1.0, 1.0, 1.0], [5.0, 1.0, 1.0], [5.0, 1.0, 1.0]]
    """
    cost = np.ones((n_classes, n_classes))
    cost[1:, 0] = miss_cost
    return cost


def prior_bias(frequencies) -> np.ndarray:
    """The output biases that make an untrained network predict the class prior.

    For one binary output (``frequencies`` of length 1, the positive fraction ``pi``), the
    log-odds ``log(pi / (1 - pi))``, so that ``sigmoid(bias) = pi``; for ``C`` softmax outputs
    (``frequencies`` of length ``C``, summing to 1), ``log(frequencies)``, so that
    ``softmax(bias) = frequencies``. With the prior as its starting prediction, the network
    does not spend its first steps pushing every output towards the rare class's frequency
    (Lin et al., 2017; the class-imbalance chapter shows what it changes).

    Args:
        frequencies: the positive fraction (binary), or the frequency of each class.

    Returns:
        The biases, float64, one per output channel.

    Raises:
        ValueError: if a frequency is not in (0, 1) for one output, or not > 0 for several:
            a class absent from the training masks has no prior to start from.

    Example:
        >>> prior_bias([0.01]).round(4).tolist()
        [-4.5951]
        >>> np.exp(prior_bias([0.9, 0.05, 0.05])).round(2).tolist()
        [0.9, 0.05, 0.05]
    """
    frequencies = np.asarray(frequencies, dtype=np.float64).ravel()
    if frequencies.size == 1:
        (fraction,) = frequencies
        if not 0.0 < fraction < 1.0:
            raise ValueError(
                f"the positive fraction must be in (0, 1) for a prior bias, got {fraction}: "
                "the training masks are all negative or all positive"
            )
        return np.log([fraction / (1.0 - fraction)])
    if frequencies.size == 0 or not np.all(frequencies > 0.0):
        raise ValueError(
            "every class needs pixels in the training masks for a prior bias, got class "
            f"frequencies {frequencies.tolist()}"
        )
    return np.log(frequencies)


def choose_threshold(
    positives,
    negatives,
    target_precision: float | None = None,
    target_recall: float | None = None,
) -> dict:
    """The decision threshold of a binary model, from the validation set's probabilities.

    ``positives[k]`` and ``negatives[k]`` count the positive and the negative pixels whose
    predicted probability ``p`` falls in bin ``k``, ``k / B <= p < (k + 1) / B`` (``B =
    len(positives)``, e.g. :data:`THRESHOLD_BINS`). At threshold ``t = k / B`` a pixel is
    predicted positive if ``p >= t``, so the true and false positives are the counts of bins
    ``k`` and above. The threshold is the one of maximal F1 (the lowest of ties); with
    ``target_precision``, the lowest threshold whose precision reaches it (the most recall
    at that precision); with ``target_recall``, the highest whose recall reaches it. A target
    no threshold reaches gives the threshold of the best value, and the rule says so.

    Returns:
        ``{"value": threshold, "rule": what it achieves}``, e.g.
        ``{"value": 0.42, "rule": "max F1 on validation (F1 0.81)"}``.

    Example:
        >>> choose_threshold([0, 0, 1, 3], [5, 2, 1, 0])
        {'value': 0.5, 'rule': 'max F1 on validation (F1 0.889)'}
        >>> choose_threshold([0, 0, 1, 3], [5, 2, 1, 0], target_recall=1.0)["value"]
        0.5
    """
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    bins = len(positives)
    # Counts at thresholds 0, 1/B, .., 1 (the last predicts nothing positive).
    true_positive = np.append(np.cumsum(positives[::-1])[::-1], 0.0)
    false_positive = np.append(np.cumsum(negatives[::-1])[::-1], 0.0)
    total_positive = true_positive[0]
    if total_positive == 0:
        return {"value": 0.5, "rule": "default 0.5: no positive pixels in the validation set"}
    predicted = true_positive + false_positive
    precision = np.divide(
        true_positive, predicted, out=np.zeros_like(predicted), where=predicted > 0
    )
    recall = true_positive / total_positive
    f1 = 2 * true_positive / (predicted + total_positive)
    if target_precision is not None:
        reached = np.flatnonzero(precision >= target_precision)
        if reached.size:
            index = reached[0]
            rule = f"precision >= {target_precision} on validation (recall {recall[index]:.3g})"
        else:
            index = int(np.argmax(precision))
            rule = (
                f"precision >= {target_precision} on validation: not reached, highest "
                f"precision {precision[index]:.3g}"
            )
    elif target_recall is not None:
        index = np.flatnonzero(recall >= target_recall)[-1]
        rule = f"recall >= {target_recall} on validation (precision {precision[index]:.3g})"
    else:
        index = int(np.argmax(f1))
        rule = f"max F1 on validation (F1 {f1[index]:.3g})"
    return {"value": float(index / bins), "rule": rule}


def plot_curves(path: Path, history: list[dict], title: str) -> None:
    """Losses and scores per epoch, drawn with the Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    losses, scores = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for name, label in (("train_loss", "training"), ("val_loss", "validation")):
        losses.plot(epochs, [row[name] for row in history], marker="o", label=label)
    for name in ("dice", "iou", "precision", "recall"):
        scores.plot(epochs, [row[name] for row in history], marker="o", label=name)
    losses.set(xlabel="epoch", ylabel="loss", title="Loss")
    scores.set(xlabel="epoch", ylabel="score", ylim=(0, 1), title="Validation scores")
    for axes in (losses, scores):
        axes.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=100)


def replace_durably(temporary: Path, path: Path) -> None:
    """Rename the finished file ``temporary`` over ``path``, so that it survives a crash.

    ``os.replace`` alone is atomic (a reader sees the old file or the new one, and a process
    killed while writing ``temporary`` leaves ``path`` intact), but after a power loss the
    rename can reach the disk before the data: ``fsync`` the file first, then the folder, so
    that the rename itself is stored. The folder's ``fsync`` is skipped where the operating
    system cannot open a folder (Windows).
    """
    with open(temporary, "rb") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    try:
        folder = os.open(Path(path).parent, os.O_RDONLY)
    except OSError:  # Windows opens no folders
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@dataclasses.dataclass
class BenchmarkResult:
    """The throughput that a script's ``--benchmark`` measured, and the step times behind it."""

    images_per_second: float  # global batch / median step time
    median_step_seconds: float
    first_step_seconds: float  # includes any tracing and compilation (--compile)
    steps: int

    def summary(self) -> str:
        """The line the scripts print after their description of the run.

        >>> BenchmarkResult(400.0, 0.04, 1.5, 20).summary()
        '400.0 images/s (median of 20 steps, 40 ms; first step 1.50 s)'
        """
        return (
            f"{self.images_per_second:.1f} images/s (median of {self.steps} steps, "
            f"{1000 * self.median_step_seconds:.0f} ms; first step "
            f"{self.first_step_seconds:.2f} s)"
        )


def summarize(first_step_seconds: float, seconds: list[float], batch_size: int) -> BenchmarkResult:
    """The :class:`BenchmarkResult` of timed steps: images per second at the median step time."""
    median = statistics.median(seconds)
    return BenchmarkResult(batch_size / median, median, first_step_seconds, len(seconds))


def time_steps(
    timed_step: Callable[[], float], steps: int, batch_size: int, warmup: int = 3
) -> BenchmarkResult:
    """Time training steps with ``timed_step`` (one step, its wall time in seconds): the first
    (compilation) separately, then ``warmup - 1`` untimed ones, then ``steps`` timed ones."""
    first = timed_step()
    for _ in range(warmup - 1):
        timed_step()
    seconds = [timed_step() for _ in range(steps)]
    return summarize(first, seconds, batch_size)
