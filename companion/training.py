"""What the PyTorch and the Keras training scripts share, framework-free.

The scripts (``python -m companion.torch.train`` and ``python -m companion.keras.train``)
declare their options as a dataclass of defaults (:func:`option`), build their command
line from it (:func:`build_parser`) and check it (:func:`check_common_options`,
:func:`check_same_run`), train the same losses on the same data (:func:`make_splits`), write
the same outputs (:data:`METRIC_COLUMNS`, :func:`plot_curves`) and time their training step
the same way (:func:`time_steps`). Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from companion.data import small_targets, touching_shapes
from companion.weightmaps import balanced_class_weights, unet_weight_map

__all__ = [
    "BINARY_LOSSES",
    "MULTICLASS_LOSSES",
    "METRICS",
    "CURVES",
    "METRIC_COLUMNS",
    "MUST_MATCH_ON_RESUME",
    "BenchmarkResult",
    "HelpFormatter",
    "Split",
    "TrainingOptions",
    "build_parser",
    "check_common_options",
    "check_same_run",
    "cost_matrix",
    "make_splits",
    "option",
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
    "tversky_beta", "w0", "sigma", "miss_cost",
)  # fmt: skip


def option(default, help: str, group: str, **argparse_kwargs):
    """A configuration field: its default, and its --help text and group for argparse."""
    return dataclasses.field(
        default=default, metadata={"help": help, "group": group, **argparse_kwargs}
    )


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
    image_size: int = option(64, "height and width of the images, a multiple of 2**depth", "data")
    n_train: int = option(512, "number of training images (seed --seed)", "data")
    n_val: int = option(128, "number of validation images (seed --seed + 1)", "data")
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
    if config.image_size % 2**config.depth:
        parser.error(
            f"--image-size {config.image_size} must be a multiple of 2**depth = {2**config.depth}"
        )
    if config.n_train < config.batch_size:
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
    changed = [name for name in must_match if saved[name] != getattr(config, name)]
    if changed:
        parser.error(
            f"--resume: {source} was trained with "
            + ", ".join(f"--{name.replace('_', '-')} {saved[name]}" for name in changed)
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
                positives = float(masks.sum())
                stats["pos_weight"] = (masks.size - positives) / max(positives, 1.0)
                stats["frequencies"] = np.array([positives / masks.size])
            splits.append(Split(images, masks))
            continue
        images, classes, instances = touching_shapes(
            n, size=config.image_size, n_classes=config.n_classes, seed=seed
        )
        if not stats:
            stats["class_weights"] = balanced_class_weights(classes, config.n_classes)
            counts = np.bincount(classes.ravel(), minlength=config.n_classes)
            stats["frequencies"] = counts / classes.size
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
