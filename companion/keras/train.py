"""Train a U-Net with Keras 3 on synthetic segmentation data, or on your own images and masks,
with any of the package's losses::

    python -m companion.keras.train --loss bce --epochs 3 --image-size 64 --n-train 256
    python -m companion.keras.train --data my_data --loss dice_bce --crop 128 --augment
    python -m companion.keras.train --loss dice_bce --prior-bias --image-size 256
    KERAS_BACKEND=torch python -m companion.keras.train --loss wce --amp bf16
    python -m companion.keras.train --benchmark --image-size 128 --batch-size 16
    TF_CONFIG='{"cluster": {"worker": ["host1:23456", "host2:23456"]},
               "task": {"type": "worker", "index": 0}}' \
        python -m companion.keras.train --strategy multi-worker --out /shared/run

The Keras twin of companion.torch.train, with the same flags where they apply (channels are
always last here; the synthetic data live in memory, the files of ``--data`` are read lazily
by a keras.utils.PyDataset, with the split, checks, crops and augmentation of the PyTorch
script). It runs on the TensorFlow and the PyTorch
backends (KERAS_BACKEND). Binary losses train on companion.data.small_targets (one output
channel), multi-class losses on companion.data.touching_shapes (``--n-classes`` channels, one-hot
targets); the model outputs logits and every loss takes them with from_logits=True.

Devices: Keras places the work on a GPU when there is one (``--device cpu`` keeps it on the
CPU). With the TensorFlow backend and more than one GPU, training runs under
tf.distribute.MirroredStrategy; ``--batch-size`` is the global batch. Mixed precision goes
through Keras's dtype policy (mixed_bfloat16, or mixed_float16 with loss scaling, GPU only).
On TensorFlow the script turns on oneDNN's CPU kernels (TF_ENABLE_ONEDNN_OPTS=1, unless the
variable is set) and leaves XLA to Keras's "auto" (on a GPU, not on a CPU) unless
``--compile``.

Several machines (TensorFlow backend): ``--strategy multi-worker`` trains under
tf.distribute.MultiWorkerMirroredStrategy. Start the same command on every machine, each with
its own TF_CONFIG: the same cluster (every worker's host:port) and its own task index, as in
the example above with index 1 on host2; worker 0 is the chief. The global batch
``--batch-size`` is split across every worker's devices. Only the chief writes ``--out``;
the other workers keep their checkpoints in a temporary folder and, with ``--resume``,
start from the chief's backup, so ``--out`` must be on storage that every worker sees.
examples/slurm/train_keras_multiworker.sbatch does this on a Slurm cluster.

In ``--out``: config.json (the flags, checked by ``--resume``, the images' normalisation and
the class statistics of the training masks; a run without ``--resume`` refuses a folder whose
config.json is of a different run); after every epoch, threshold.json (binary losses: the
decision threshold chosen on the validation set, ``{"value", "rule"}``),
checkpoint.weights.h5 (the model's and the optimizer's variables, written to a temporary file
and renamed; model.load_weights reads it), backup/ (keras.callbacks.BackupAndRestore's
training state, which ``--resume`` continues from) and metrics.csv (keras.callbacks.CSVLogger:
epoch, train_loss, val_loss, dice, iou, precision, recall on the validation set, pooled over
its pixels and macro-averaged over the non-background classes); at the end, curves.png. The
training batches come in an order fixed by the seed and the epoch, so a run of 1 epoch
resumed to 2 ends with the weights of a 2-epoch run.
"""

# ruff: noqa: E402 (the environment is set before TensorFlow and Keras are imported)
import os

# Before TensorFlow loads, or its start-up messages reach stdout and stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import contextlib
import csv
import dataclasses
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from companion import training
from companion.data import confusion_matrix, segmentation_scores
from companion.folders import NORMALIZATION, DataError, FolderDataset
from companion.keras import (
    cost_sensitive_categorical_crossentropy,
    dice,
    dice_bce,
    focal,
    tversky,
    weighted_bce,
    weighted_categorical_crossentropy,
)
from companion.keras.models import unet
from companion.training import (
    CURVES,
    METRIC_COLUMNS,
    METRICS,
    BenchmarkResult,
    cost_matrix,
    option,
    plot_curves,
    replace_durably,
)

__all__ = [
    "BenchmarkResult",
    "Config",
    "benchmark",
    "benchmark_step",
    "build_parser",
    "distribution_scope",
    "main",
    "make_model",
    "multi_worker_strategy",
    "parse_config",
    "precision_policy",
    "train",
]

CHECKPOINT = "checkpoint.weights.h5"
BACKUP = "backup"
CONFIG = "config.json"
THRESHOLD = "threshold.json"
# A backup only resumes a run that builds the same data, model and optimizer, under the same
# precision policy.
MUST_MATCH_ON_RESUME = training.MUST_MATCH_ON_RESUME + ("amp",)


# -- configuration ------------------------------------------------------------------------


@dataclasses.dataclass
class Config(training.TrainingOptions):
    """The script's options, one command-line flag each (``--help`` lists them).

    Those of :class:`~companion.training.TrainingOptions`, plus the system options (device,
    precision policy, compilation) and the output options of this script.
    """

    # The options both scripts share are in TrainingOptions; these are this script's.
    device: str = option(
        "auto",
        "auto: the GPUs if there are any, else the CPU",
        "system",
        choices=("auto", "cpu", "cuda"),
    )
    amp: str = option(
        "none",
        "mixed precision policy: mixed_bfloat16, or mixed_float16 with loss scaling (GPU only)",
        "system",
        choices=("none", "bf16", "fp16"),
    )
    compile: bool = option(
        False,
        "jit_compile=True (XLA on TensorFlow, torch.compile on PyTorch); without it, Keras's "
        '"auto": XLA with TensorFlow on one GPU, none on a CPU, under tf.distribute or on PyTorch',
        "system",
    )
    strategy: str = option(
        "auto",
        "auto: MirroredStrategy over the GPUs (TensorFlow, > 1 GPU), else one device; "
        "multi-worker: tf.distribute.MultiWorkerMirroredStrategy over the workers of TF_CONFIG "
        "(TensorFlow backend; every worker runs the same command with its own TF_CONFIG)",
        "system",
        choices=("auto", "multi-worker"),
    )
    out: str = option(
        "runs/keras",
        "output folder: checkpoint.weights.h5, backup/, metrics.csv, curves.png",
        "output",
    )
    resume: bool = option(False, "continue from OUT/backup up to --epochs", "output")
    benchmark: bool = option(
        False, "time training steps and print images per second; writes nothing", "output"
    )
    benchmark_steps: int = option(
        20, "--benchmark: timed steps, after 3 warm-up steps; the median is reported", "output"
    )
    quiet: bool = option(False, "no progress bars (one line per epoch)", "output")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, one flag per field of :class:`Config`."""
    return training.build_parser(
        Config, prog="python -m companion.keras.train", description=__doc__
    )


def gpu_count() -> int:
    """The GPUs that the Keras backend sees."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    if backend == "jax":
        import jax

        return sum(device.platform == "gpu" for device in jax.devices())
    return 0


def cluster_workers() -> tuple[int, bool]:
    """The number of workers in TF_CONFIG's cluster, and whether this process is the chief:
    the task of type ``chief``, or worker 0 in a cluster without one (TensorFlow's rule).

    Raises:
        ValueError: if TF_CONFIG is unset, is not JSON, or lacks ``cluster`` or ``task``.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("TF_CONFIG is not set")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        chief = task["type"] == "chief" or (
            task["type"] == "worker" and task["index"] == 0 and "chief" not in cluster
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"TF_CONFIG must be JSON with a cluster and a task, got {text!r} ({error!r})"
        ) from None
    return workers, chief


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse the command line into a :class:`Config`; bad combinations exit with an error."""
    parser = build_parser()
    config = Config(**vars(parser.parse_args(argv)))
    training.check_common_options(parser, config)
    if config.benchmark_steps < 1:
        parser.error("--benchmark-steps must be >= 1")
    gpus = 0 if config.device == "cpu" else gpu_count()
    torch_backend = keras.backend.backend() == "torch"
    if config.device == "cpu" and torch_backend and keras.ops.zeros(()).device.type != "cpu":
        # Under keras.device("cpu"), the torch backend's variables stop receiving gradients.
        parser.error(
            "--device cpu: the torch backend chose its device when Keras was imported; "
            "start with KERAS_TORCH_DEVICE=cpu instead"
        )
    if config.device == "cuda" and gpus == 0:
        parser.error(f"--device cuda, but the {keras.backend.backend()} backend sees no GPU")
    if config.amp == "fp16" and gpus == 0:
        parser.error("--amp fp16 (mixed_float16) needs a GPU; on the CPU use --amp bf16 or none")
    if config.benchmark and config.resume:
        parser.error("--benchmark writes no checkpoint and cannot be combined with --resume")
    saved_config = Path(config.out) / CONFIG
    if not config.resume and not config.benchmark and saved_config.is_file():
        saved = json.loads(saved_config.read_text())
        training.check_new_run(parser, config, saved, saved_config, MUST_MATCH_ON_RESUME)
    if config.strategy == "multi-worker":
        if keras.backend.backend() != "tensorflow":
            parser.error(
                "--strategy multi-worker runs tf.distribute.MultiWorkerMirroredStrategy and "
                f"needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}; on PyTorch, "
                "run companion.torch.train under torchrun"
            )
        try:
            workers, _ = cluster_workers()
        except ValueError as error:
            parser.error(f"--strategy multi-worker: {error}; every worker needs its own")
        if config.batch_size % workers:
            parser.error(
                f"--batch-size {config.batch_size} (the global batch) must be a multiple of "
                f"the {workers} workers of TF_CONFIG"
            )
        if config.benchmark:
            parser.error("--benchmark times one process; run it without --strategy multi-worker")
        if config.data is not None:
            parser.error(
                "--strategy multi-worker trains on the synthetic data only, not yet on --data; "
                "on your own data, train on one machine, or with companion.torch.train under "
                "torchrun"
            )
    if config.resume:
        metadata = Path(config.out) / BACKUP / "training_metadata.json"
        if not metadata.is_file():
            parser.error(f"--resume, but there is no backup at {metadata.parent}")
        saved = json.loads((Path(config.out) / CONFIG).read_text())
        training.check_same_run(parser, config, saved, config.out, MUST_MATCH_ON_RESUME)
    return config


# -- setup: distribution, device, precision, seed -----------------------------------------


@functools.cache
def multi_worker_strategy(device: str = "auto"):
    """This process's tf.distribute.MultiWorkerMirroredStrategy, from TF_CONFIG; made once,
    before anything else runs on TensorFlow (:func:`main` asks for it first), as TensorFlow
    requires. Under ``--device cpu`` the GPUs are hidden from it."""
    import tensorflow as tf

    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    return tf.distribute.MultiWorkerMirroredStrategy()


def distribution_scope(config: Config) -> contextlib.AbstractContextManager:
    """``--strategy multi-worker``: the scope of :func:`multi_worker_strategy`. Else
    MirroredStrategy over every GPU (TensorFlow, > 1 GPU), the CPU under --device cpu, else
    Keras's default placement. The torch backend fixes its device at import
    (KERAS_TORCH_DEVICE); :func:`parse_config` has checked that it is the CPU then."""
    if config.strategy == "multi-worker":
        return multi_worker_strategy(config.device).scope()
    if config.device == "cpu" and keras.backend.backend() != "torch":
        return keras.device("cpu:0")
    if keras.backend.backend() == "tensorflow" and gpu_count() > 1:
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


@contextlib.contextmanager
def precision_policy(amp: str):
    """Keras's global dtype policy for the block, restored afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(
        {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[amp]
    )
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# -- data ---------------------------------------------------------------------------------


def make_datasets(config: Config) -> tuple[tuple, tuple, dict]:
    """``(images, targets, sample_weight or None)`` for training and validation, and the
    statistics the losses take from the training set (:func:`companion.training.make_splits`).

    Images ``(N, H, W, 1)`` float32; binary targets ``(N, H, W, 1)`` float32, multi-class
    targets one-hot ``(N, H, W, n_classes)`` float32; per-pixel sample weights ``(N, H, W)``:
    the balanced class weight of each pixel (``wce``) or the U-Net weight map (``wce_map``).
    """
    train_split, val_split, stats = training.make_splits(config)

    def arrays(split: training.Split) -> tuple:
        targets, sample_weight = keras_targets(split.targets, split.weight_maps, config, stats)
        return split.images[..., None], targets, sample_weight

    return arrays(train_split), arrays(val_split), stats


def keras_targets(labels, weight_maps, config: Config, stats: dict) -> tuple:
    """``(targets, sample_weight or None)`` of label maps ``(N, H, W)``: binary masks
    ``(N, H, W, 1)`` float32, else one-hot ``(N, H, W, n_classes)``; the per-pixel weights
    of ``wce`` (each pixel's balanced class weight) or ``wce_map`` (``weight_maps``)."""
    if config.binary:
        return labels[..., None].astype(np.float32), None
    targets = np.eye(config.n_classes, dtype=np.float32)[labels]
    if config.loss == "wce":
        return targets, np.asarray(stats["class_weights"], dtype=np.float32)[labels]
    return targets, weight_maps


class FolderBatches(keras.utils.PyDataset):
    """Batches of a :class:`companion.folders.FolderDataset`, read from disk as Keras asks.

    Training batches (``shuffle=True``) come in the order of :class:`ShuffledBatches` (a
    permutation seeded by ``(seed, epoch)``, the last incomplete batch dropped), and each
    item's crop and augmentation are seeded by ``(seed, epoch, index)`` as in
    ``companion.torch.train``; validation batches come in order, the last one kept.
    """

    def __init__(
        self, items: FolderDataset, batch_size: int, config: Config, stats: dict, shuffle: bool
    ):
        super().__init__()
        self.items, self.batch_size, self.shuffle = items, batch_size, shuffle
        self.config, self.stats = config, stats
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Fix the batch order and the random crops of ``epoch``."""
        self.epoch = epoch
        if self.shuffle:
            self.order = np.random.default_rng([self.config.seed, epoch]).permutation(
                len(self.items)
            )
        else:
            self.order = np.arange(len(self.items))

    def __len__(self) -> int:
        if self.shuffle:
            return len(self.items) // self.batch_size
        return -(-len(self.items) // self.batch_size)

    def __getitem__(self, index: int) -> tuple:
        indices = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, labels, weights = zip(
            *(self.items.item(int(i), self.epoch) for i in indices), strict=True
        )
        weight_maps = None if weights[0] is None else np.stack(weights)
        targets, sample_weight = keras_targets(
            np.stack(labels), weight_maps, self.config, self.stats
        )
        batch = (np.stack(images), targets)
        return batch if sample_weight is None else (*batch, sample_weight)


class ArrayBatches(keras.utils.PyDataset):
    """The validation arrays of the synthetic data, in order, as batches."""

    def __init__(self, arrays: tuple, batch_size: int):
        super().__init__()
        self.arrays = tuple(array for array in arrays if array is not None)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.arrays[0]) // self.batch_size)

    def __getitem__(self, index: int) -> tuple:
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return tuple(array[window] for array in self.arrays)


class ShuffledBatches(keras.utils.PyDataset):
    """Training batches in an order that depends only on the seed and the epoch (set by
    :meth:`set_epoch` at the start of each epoch, as ``DistributedSampler.set_epoch``), so a
    resumed run sees the batches an uninterrupted one would have seen.

    Like ``companion.torch.train``, the last incomplete batch of an epoch is dropped.
    """

    def __init__(self, arrays: tuple, batch_size: int, seed: int):
        super().__init__()
        self.arrays = tuple(array for array in arrays if array is not None)
        self.batch_size = batch_size
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Fix the batch order of ``epoch``: a permutation seeded by ``(seed, epoch)``."""
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.arrays[0]))

    def __len__(self) -> int:
        return len(self.arrays[0]) // self.batch_size

    def __getitem__(self, index: int) -> tuple:
        indices = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return tuple(array[indices] for array in self.arrays)


# -- losses -------------------------------------------------------------------------------


def build_loss(config: Config, stats: dict) -> Callable:
    """The loss of ``config.loss`` as Keras's ``loss(y_true, y_pred)``, on logits.

    ``bce`` and ``wce`` are Keras's built-ins (``wce`` through per-pixel sample weights);
    the others are the package's (:mod:`companion.keras`). Per-pixel weights (``wce``,
    ``wce_map``) reach the loss as ``sample_weight``.
    """
    name = config.loss
    if name == "bce":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if name == "wce":
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    if name == "weighted_bce":
        pos_weight = config.pos_weight if config.pos_weight is not None else stats["pos_weight"]
        return functools.partial(weighted_bce, pos_weight=pos_weight, from_logits=True)
    if name in ("dice", "dice_bce"):
        return functools.partial(dice if name == "dice" else dice_bce, from_logits=True)
    if name == "focal":
        return functools.partial(focal, gamma=config.focal_gamma, from_logits=True)
    if name == "tversky":
        return functools.partial(
            tversky,
            alpha=config.tversky_alpha,
            beta=config.tversky_beta,
            from_logits=True,
        )
    if name == "wce_map":
        # The weight map, class weights included, arrives as sample_weight.
        return functools.partial(weighted_categorical_crossentropy, from_logits=True)
    if name == "cost":
        cost = cost_matrix(config.n_classes, config.miss_cost).astype("float32")
        return functools.partial(
            cost_sensitive_categorical_crossentropy, cost_matrix=cost, from_logits=True
        )
    raise ValueError(f"unknown loss {name!r}")


# -- model --------------------------------------------------------------------------------


class MultiWorkerModel(keras.Model):
    """The functional U-Net, with two repairs of Keras 3's ``fit`` under
    MultiWorkerMirroredStrategy, where it fails as it is (keras-team/keras#20585):

    - ``fit`` and ``evaluate`` build the loss from their first batch, first averaged across
      the workers, which fails for a batch of several arrays: the loss is built from
      ``local_batch``, a batch of this worker's data, instead;
    - each step's logs are averaged across the workers along their first axis, which
      scalars lack: the steps return them with one, of length 1.
    """

    local_batch = None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            iterator, data_batch = None, self.local_batch
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        return {
            name: keras.ops.reshape(value, (1,)) for name, value in super().train_step(data).items()
        }

    def test_step(self, data):
        return {
            name: keras.ops.reshape(value, (1,)) for name, value in super().test_step(data).items()
        }


def make_model(config: Config, stats: dict) -> keras.Model:
    """The U-Net, compiled with the optimizer and the loss; with ``--prior-bias``, its output
    bias starts at the class prior of the training masks (:func:`companion.training.prior_bias`).
    """
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=0.9)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=config.lr)
    size = None if config.data is not None else config.image_size
    model = unet(
        (size, size, config.in_channels),
        out_channels=config.out_channels,
        base_channels=config.base_channels,
        depth=config.depth,
    )
    if config.strategy == "multi-worker":
        model = MultiWorkerModel(model.input, model.output, name=model.name)
    if config.prior_bias:
        bias = training.prior_bias(stats["frequencies"]).astype("float32")
        model.get_layer("head").bias.assign(bias)
    model.compile(
        optimizer=optimizer,
        loss=build_loss(config, stats),
        # "auto": Keras turns XLA on where it pays (TensorFlow on a GPU, without
        # tf.distribute); on a CPU it is slower than TensorFlow's oneDNN kernels.
        jit_compile=True if config.compile else "auto",
    )
    return model


# -- evaluation, checkpoints and outputs --------------------------------------------------


class ValidationScores(keras.callbacks.Callback):
    """Adds Dice, IoU, precision and recall on the validation set (pooled over its pixels,
    averaged over the non-background classes) and ``train_loss`` to each epoch's logs; for a
    binary model, writes the decision threshold that the validation set gives the epoch's
    weights to ``threshold_path`` (:func:`companion.training.choose_threshold`)."""

    def __init__(self, batches, config: Config, threshold_path: Path | None = None):
        super().__init__()
        self.batches = batches
        self.config = config
        self.n_classes = 2 if config.binary else config.n_classes
        self.threshold_path = threshold_path
        self.multi_worker = config.strategy == "multi-worker"

    def on_epoch_end(self, epoch, logs=None):
        bins = training.THRESHOLD_BINS
        confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        histogram = np.zeros(2 * bins, dtype=np.int64)
        for index in range(len(self.batches)):
            images, targets = self.batches[index][:2]
            if self.multi_worker:
                # predict_on_batch would split the batch across the workers and wait for
                # them all; the chief scores alone, with its copy of the weights.
                logits = self.model(images, training=False)
            else:
                logits = self.model.predict_on_batch(images)
            logits = keras.ops.convert_to_numpy(logits).astype(np.float32)
            if self.config.binary:
                truth = targets[..., 0].astype(np.int64)
                predicted = (logits[..., 0] > 0).astype(np.int64)
                probability = 1.0 / (1.0 + np.exp(-logits[..., 0].astype(np.float64)))
                probability_bin = np.clip((probability * bins).astype(np.int64), 0, bins - 1)
                histogram += np.bincount(
                    (truth * bins + probability_bin).ravel(), minlength=2 * bins
                )
            else:
                truth, predicted = targets.argmax(-1), logits.argmax(-1)
            confusion += confusion_matrix(truth, predicted, self.n_classes)
        logs.update(segmentation_scores(confusion))
        logs["train_loss"] = logs["loss"]
        if self.config.binary and self.threshold_path is not None:
            negatives, positives = histogram.reshape(2, bins)
            threshold = training.choose_threshold(
                positives, negatives, self.config.target_precision, self.config.target_recall
            )
            write_json_durably(self.threshold_path, threshold)


class MetricsLogger(keras.callbacks.CSVLogger):
    """CSVLogger with the columns of companion.torch.train's metrics.csv, epochs from 1."""

    def on_epoch_end(self, epoch, logs=None):
        self.keys = list(METRIC_COLUMNS[1:])
        super().on_epoch_end(epoch + 1, logs)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the model's and optimizer's variables each epoch: a temporary file, a rename."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        temporary = self.path.with_name("checkpoint.tmp.weights.h5")
        self.model.save_weights(temporary, overwrite=True)
        replace_durably(temporary, self.path)


def write_json_durably(path: Path, value) -> None:
    """Write ``value`` as JSON to ``path``: a temporary file, then a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2))
    replace_durably(temporary, path)


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.csv``, as dictionaries of floats."""
    with open(path, newline="") as file:
        return [{name: float(value) for name, value in row.items()} for row in csv.DictReader(file)]


# -- training -----------------------------------------------------------------------------


def make_batches(config: Config, splits: training.FolderSplits | None = None):
    """The training batches (with ``set_epoch``), the validation batches and the statistics
    of the training masks: of ``--data`` (``splits``, read and checked here if None), else of
    the synthetic data in memory."""
    if config.data is None:
        (images, targets, weights), validation, stats = make_datasets(config)
        batches = ShuffledBatches((images, targets, weights), config.batch_size, config.seed)
        return batches, ArrayBatches(validation, config.batch_size), stats
    if splits is None:
        splits = training.folder_splits(config)
    config.in_channels = splits.channels
    batches = FolderBatches(splits.train, config.batch_size, config, splits.stats, shuffle=True)
    validation = FolderBatches(splits.val, config.batch_size, config, splits.stats, shuffle=False)
    return batches, validation, splits.stats


def fit(config: Config, batches, validation, stats: dict, out: Path, chief: bool = True) -> None:
    """Build the model and fit on ``batches`` (:func:`make_batches`), with the callbacks that
    checkpoint and back up into ``out``; the chief also scores, chooses the threshold and
    logs."""
    with distribution_scope(config):
        model = make_model(config, stats)
        callbacks = [
            # Epochs count from 0, and from the restored epoch after BackupAndRestore.
            keras.callbacks.LambdaCallback(
                on_epoch_begin=lambda epoch, logs: batches.set_epoch(epoch)
            ),
        ]
        if chief:
            callbacks.append(ValidationScores(validation, config, out / THRESHOLD))
        callbacks += [
            AtomicCheckpoint(out / CHECKPOINT),
            keras.callbacks.BackupAndRestore(str(out / BACKUP), delete_checkpoint=False),
        ]
        if chief:
            callbacks.append(MetricsLogger(str(out / METRICS), append=config.resume))
        if isinstance(model, MultiWorkerModel):
            model.local_batch = batches[0]
        # A progress bar on a terminal, else (or with --quiet) one line per epoch; nothing
        # from the workers other than the chief.
        verbose = 1 if sys.stdout.isatty() and not config.quiet else 2
        # Under MultiWorkerMirroredStrategy a PyDataset as validation data left the chief
        # reading other arrays than the validation masks from it (Keras 3.15, TF 2.21):
        # there the validation set goes in as arrays.
        if isinstance(validation, ArrayBatches) and config.strategy == "multi-worker":
            validation_data = validation.arrays
        else:
            validation_data = validation
        model.fit(
            batches,
            epochs=config.epochs,
            # The batches shuffle themselves; Keras would shuffle their order with its own RNG.
            shuffle=False,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=verbose if chief else 0,
        )


def train(config: Config, splits: training.FolderSplits | None = None) -> list[dict]:
    """Fit with the callbacks that checkpoint, back up, score and log; returns every epoch's
    metrics (of this and earlier runs). With ``--data``, the data are ``splits`` (:func:`main`
    read and checked them), or read here if None.

    config.json holds the configuration, the images' ``normalization``
    (:data:`companion.folders.NORMALIZATION`) and the class ``statistics`` of the training
    masks; for the binary losses, threshold.json holds the decision threshold that the
    validation set gives the last epoch's weights, ``{"value", "rule"}``.

    Under ``--strategy multi-worker`` only the chief writes to ``--out`` and returns the
    metrics; every other worker writes its checkpoints to a temporary folder, deleted at the
    end (TensorFlow's advice), resumes from the chief's backup in ``--out`` (which every worker
    must see: a shared file system) and returns ``[]``.
    """
    batches, validation, stats = make_batches(config, splits)
    chief = config.strategy != "multi-worker" or cluster_workers()[1]
    out = Path(config.out)
    if not chief:
        scratch = Path(tempfile.mkdtemp(prefix="companion-keras-worker-"))
        try:
            if config.resume:
                shutil.copytree(out / BACKUP, scratch / BACKUP)
            fit(config, batches, validation, stats, scratch, chief=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return []
    out.mkdir(parents=True, exist_ok=True)
    if not config.resume:
        # A stale backup would make BackupAndRestore resume a run nobody asked to resume.
        shutil.rmtree(out / BACKUP, ignore_errors=True)
        saved = dataclasses.asdict(config)
        saved["normalization"] = NORMALIZATION
        saved["statistics"] = training.plain_statistics(stats)
        (out / CONFIG).write_text(json.dumps(saved, indent=2))
    print(training.describe_statistics(stats, config.binary), flush=True)
    fit(config, batches, validation, stats, out)
    history = read_metrics(out / METRICS) if (out / METRICS).is_file() else []
    if history:
        plot_curves(
            out / CURVES, history, f"U-Net (Keras, {keras.backend.backend()}), loss {config.loss}"
        )
    return history


# -- benchmark ----------------------------------------------------------------------------


def benchmark_step(
    config: Config, splits: training.FolderSplits | None = None
) -> Callable[[], float]:
    """A function that runs one training step on one batch (always the same) and returns its
    wall time in seconds: ``train_on_batch``, which runs the step function that ``fit`` runs
    (the same ``jit_compile``, one step per execution)."""
    batches, _, stats = make_batches(config, splits)
    images, targets, *weights = batches[0]
    weights = weights[0] if weights else None
    with distribution_scope(config):
        model = make_model(config, stats)
    # Under --device cpu the steps stay on the CPU with the variables, also beside a GPU.
    on_cpu = config.device == "cpu" and keras.backend.backend() != "torch"

    def timed_step() -> float:
        started = time.perf_counter()
        with keras.device("cpu:0") if on_cpu else contextlib.nullcontext():
            # Returning the loss as a Python float waits for the step to finish.
            float(model.train_on_batch(images, targets, sample_weight=weights))
        return time.perf_counter() - started

    return timed_step


def benchmark(
    config: Config, warmup: int = 3, splits: training.FolderSplits | None = None
) -> BenchmarkResult:
    """Time training steps (:func:`benchmark_step`): the first (tracing, compilation)
    separately, then ``warmup - 1`` untimed ones, then ``config.benchmark_steps`` timed ones."""
    return training.time_steps(
        benchmark_step(config, splits), config.benchmark_steps, config.batch_size, warmup
    )


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[dict] | BenchmarkResult:
    """Run the script on ``argv``: train and return every epoch's metrics, or benchmark."""
    config = parse_config(argv)
    splits = None
    if config.data is not None:
        try:
            splits = training.folder_splits(config)
        except DataError as error:
            training.exit_with_data_error("python -m companion.keras.train", error)
    if config.strategy == "multi-worker":
        multi_worker_strategy(config.device)
    keras.utils.clear_session()
    keras.utils.set_random_seed(config.seed)
    with precision_policy(config.amp):
        if config.benchmark:
            result = benchmark(config, splits=splits)
            size = config.crop or config.image_size
            print(
                f"{keras.backend.backend()} backend, {config.amp} precision, "
                + (f"{size}x{size}, " if size else "")
                + f"batch {config.batch_size}: {result.summary()}"
            )
            return result
        return train(config, splits)


if __name__ == "__main__":
    if keras.backend.backend() == "tensorflow" and "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
        # oneDNN's convolutions, backward passes above all, train the U-Net faster on a CPU
        # than TensorFlow's own kernels, but TensorFlow leaves them off on a CPU without
        # AVX-512 and reads the variable only as it loads, which `python -m` has done
        # already (with the companion.keras package): start again with the variable set.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "companion.keras.train", *sys.argv[1:]])
    main()
