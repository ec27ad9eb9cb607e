"""What the PyTorch and the Keras training scripts share, framework-free.

The scripts (``python -m companion.torch.train`` and ``python -m companion.keras.train``)
declare their options as a dataclass of defaults (:func:`option`), build their command
line from it (:func:`build_parser`), train the same losses on the same data, and write the
same outputs (:func:`plot_curves`). Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "BINARY_LOSSES",
    "MULTICLASS_LOSSES",
    "HelpFormatter",
    "TrainingOptions",
    "build_parser",
    "cost_matrix",
    "find",
    "missing",
    "check_common_options",
    "option",
    "plot_curves",
    "prior_bias",
    "replace_durably",
]

#: The ``--loss`` values of binary segmentation (trained on small_targets, one output channel).
BINARY_LOSSES = ("bce", "weighted_bce", "dice", "dice_bce", "focal", "tversky")
#: The ``--loss`` values of multi-class segmentation (trained on touching_shapes).
MULTICLASS_LOSSES = ("wce", "wce_map", "cost")


def option(default, help: str, group: str, **argparse_kwargs):
    """A configuration field: its default, and its --help text and group for argparse."""
    return dataclasses.field(
        default=default, metadata={"help": help, "group": group, **argparse_kwargs}
    )


@dataclasses.dataclass
class TrainingOptions:
    """The options both training scripts take: loss, schedule, data, model, loss parameters.

    Each script's ``Config`` subclasses this and adds its system and output options; a
    field redefined there (``batch_size``, whose meaning under distribution differs) keeps
    its place in ``--help``.
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
    batch_size: int = option(16, "global batch size", "training")

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


def find(path: str):
    """The object at a dotted path such as ``companion.torch.dice_loss``, or None if absent."""
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return None
    return getattr(module, attribute, None)


def check_common_options(parser: argparse.ArgumentParser, config, requirements) -> None:
    """The checks both scripts make on a parsed ``config``; a failure exits via ``parser.error``.

    ``requirements`` are the dotted paths of the package functions ``config.loss`` needs.
    """
    for name in ("epochs", "batch_size", "n_train", "n_val", "base_channels", "depth"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if config.benchmark_steps < 1:
        parser.error("--benchmark-steps must be >= 1")
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
    if absent := missing(requirements):
        parser.error(
            f"--loss {config.loss} needs {' and '.join(absent)}, which this installation "
            "does not provide"
        )


def missing(paths: Iterable[str]) -> list[str]:
    """The dotted paths among ``paths`` that this installation does not provide."""
    return [path for path in paths if find(path) is None]


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
