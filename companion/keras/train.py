"""Train a U-Net with Keras 3 on synthetic segmentation data with any of the package's losses::

    python -m companion.keras.train --loss bce --epochs 3 --image-size 64 --n-train 256
    python -m companion.keras.train --loss dice_bce --prior-bias --image-size 256
    KERAS_BACKEND=torch python -m companion.keras.train --loss wce --amp bf16
    python -m companion.keras.train --benchmark --image-size 128 --batch-size 16
    TF_CONFIG='{"cluster": {"worker": ["host1:23456", "host2:23456"]},
               "task": {"type": "worker", "index": 0}}' \
        python -m companion.keras.train --strategy multi-worker --out /shared/run

The Keras twin of companion.torch.train, with the same flags where they apply (channels are
always last here, and the data live in memory). It runs on the TensorFlow and the PyTorch
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

In ``--out``: config.json (the flags, checked by ``--resume``); after every epoch,
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
        if config.binary:
            return split.images[..., None], split.targets[..., None], None
        targets = np.eye(config.n_classes, dtype=np.float32)[split.targets]
        sample_weight = split.weight_maps
        if config.loss == "wce":
            sample_weight = stats["class_weights"].astype(np.float32)[split.targets]
        return split.images[..., None], targets, sample_weight

    return arrays(train_split), arrays(val_split), stats


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
    model = unet(
        (config.image_size, config.image_size, 1),
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
    averaged over the non-background classes) and ``train_loss`` to each epoch's logs."""

    def __init__(self, images, targets, config: Config):
        super().__init__()
        self.images = images
        self.binary = config.binary
        self.batch_size = config.batch_size
        self.n_classes = 2 if config.binary else config.n_classes
        self.truth = targets[..., 0].astype(np.int64) if config.binary else targets.argmax(-1)
        self.multi_worker = config.strategy == "multi-worker"

    def on_epoch_end(self, epoch, logs=None):
        if self.multi_worker:
            # predict would split the images across the workers and wait for them all; the
            # chief scores alone, with its copy of the weights.
            logits = np.concatenate(
                [
                    keras.ops.convert_to_numpy(
                        self.model(self.images[start : start + self.batch_size], training=False)
                    )
                    for start in range(0, len(self.images), self.batch_size)
                ]
            )
        else:
            logits = self.model.predict(self.images, batch_size=self.batch_size, verbose=0)
        predicted = (logits[..., 0] > 0).astype(np.int64) if self.binary else logits.argmax(-1)
        logs.update(segmentation_scores(confusion_matrix(self.truth, predicted, self.n_classes)))
        logs["train_loss"] = logs["loss"]


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


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.csv``, as dictionaries of floats."""
    with open(path, newline="") as file:
        return [{name: float(value) for name, value in row.items()} for row in csv.DictReader(file)]


# -- training -----------------------------------------------------------------------------


def fit(config: Config, out: Path, chief: bool = True) -> None:
    """Build the data and the model and fit, with the callbacks that checkpoint and back up
    into ``out``; the chief also scores and logs."""
    (images, targets, weights), (val_images, val_targets, val_weights), stats = make_datasets(
        config
    )
    validation = (val_images, val_targets) + ((val_weights,) if val_weights is not None else ())
    batches = ShuffledBatches((images, targets, weights), config.batch_size, config.seed)
    with distribution_scope(config):
        model = make_model(config, stats)
        callbacks = [
            # Epochs count from 0, and from the restored epoch after BackupAndRestore.
            keras.callbacks.LambdaCallback(
                on_epoch_begin=lambda epoch, logs: batches.set_epoch(epoch)
            ),
        ]
        if chief:
            callbacks.append(ValidationScores(val_images, val_targets, config))
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
        model.fit(
            batches,
            epochs=config.epochs,
            # The batches shuffle themselves; Keras would shuffle their order with its own RNG.
            shuffle=False,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose if chief else 0,
        )


def train(config: Config) -> list[dict]:
    """Fit with the callbacks that checkpoint, back up, score and log; returns every epoch's
    metrics (of this and earlier runs).

    Under ``--strategy multi-worker`` only the chief writes to ``--out`` and returns the
    metrics; every other worker writes its checkpoints to a temporary folder, deleted at the
    end (TensorFlow's advice), resumes from the chief's backup in ``--out`` (which every worker
    must see: a shared file system) and returns ``[]``.
    """
    chief = config.strategy != "multi-worker" or cluster_workers()[1]
    out = Path(config.out)
    if not chief:
        scratch = Path(tempfile.mkdtemp(prefix="companion-keras-worker-"))
        try:
            if config.resume:
                shutil.copytree(out / BACKUP, scratch / BACKUP)
            fit(config, scratch, chief=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return []
    out.mkdir(parents=True, exist_ok=True)
    if not config.resume:
        # A stale backup would make BackupAndRestore resume a run nobody asked to resume.
        shutil.rmtree(out / BACKUP, ignore_errors=True)
        (out / CONFIG).write_text(json.dumps(dataclasses.asdict(config), indent=2))
    fit(config, out)
    history = read_metrics(out / METRICS) if (out / METRICS).is_file() else []
    if history:
        plot_curves(
            out / CURVES, history, f"U-Net (Keras, {keras.backend.backend()}), loss {config.loss}"
        )
    return history


# -- benchmark ----------------------------------------------------------------------------


def benchmark_step(config: Config) -> Callable[[], float]:
    """A function that runs one training step on one batch (always the same) and returns its
    wall time in seconds: ``train_on_batch``, which runs the step function that ``fit`` runs
    (the same ``jit_compile``, one step per execution)."""
    (images, targets, weights), _, stats = make_datasets(config)
    batch = slice(0, config.batch_size)
    images, targets = images[batch], targets[batch]
    weights = None if weights is None else weights[batch]
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


def benchmark(config: Config, warmup: int = 3) -> BenchmarkResult:
    """Time training steps (:func:`benchmark_step`): the first (tracing, compilation)
    separately, then ``warmup - 1`` untimed ones, then ``config.benchmark_steps`` timed ones."""
    return training.time_steps(
        benchmark_step(config), config.benchmark_steps, config.batch_size, warmup
    )


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[dict] | BenchmarkResult:
    """Run the script on ``argv``: train and return every epoch's metrics, or benchmark."""
    config = parse_config(argv)
    if config.strategy == "multi-worker":
        multi_worker_strategy(config.device)
    keras.utils.clear_session()
    keras.utils.set_random_seed(config.seed)
    with precision_policy(config.amp):
        if config.benchmark:
            result = benchmark(config)
            print(
                f"{keras.backend.backend()} backend, {config.amp} precision, "
                f"{config.image_size}x{config.image_size}, batch {config.batch_size}: "
                f"{result.summary()}"
            )
            return result
        return train(config)


if __name__ == "__main__":
    if keras.backend.backend() == "tensorflow" and "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
        # oneDNN's convolutions train the U-Net faster on a CPU than TensorFlow's own kernels
        # (the profile of issue 17), but TensorFlow leaves them off on a CPU without AVX-512
        # and reads the variable only as it loads, which `python -m` has done already (with
        # the companion.keras package): start again with the variable set.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "companion.keras.train", *sys.argv[1:]])
    main()
