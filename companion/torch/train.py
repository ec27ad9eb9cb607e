"""Train a U-Net on synthetic segmentation data, or on your own images and masks, with any of
the package's losses::

    python -m companion.torch.train --loss bce --epochs 3 --image-size 64 --n-train 256
    python -m companion.torch.train --loss dice_bce --prior-bias --image-size 256
    python -m companion.torch.train --data my_data --loss dice_bce --crop 128 --augment \\
        --num-workers 2 --target-precision 0.9
    python -m companion.torch.train --loss wce --device cuda --amp bf16 --channels-last --compile
    torchrun --standalone --nproc_per_node 4 -m companion.torch.train --loss dice_bce
    python -m companion.torch.train --benchmark --image-size 128 --batch-size 16

Binary losses train on companion.data.small_targets (one output channel, about 1% positive
pixels), multi-class losses on companion.data.touching_shapes (``--n-classes`` output channels).
The model outputs logits; every loss takes them as they are.

``--data DIR`` trains on a folder instead: DIR/images and DIR/masks paired by file name (PNG,
TIFF or .npy; see companion.folders), the validation set from DIR/val or ``--val-fraction`` of
the pairs. Every file is read and checked first: a bad one stops the run with one line naming
it (exit status 2). The items are then read lazily by the DataLoader's workers, resized
(``--image-size``), cropped (``--crop``: random crops for training, tiles for validation) and
augmented (``--augment``), each seeded by the seed, the epoch and its index.

The same command runs on a laptop CPU, one GPU or many. The device is picked at run time
(CUDA, then MPS, then CPU). Launched by torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK),
each process trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA) on its share of
every batch: ``--batch-size`` is the global batch, split evenly, so the updates are those of one
process on the same batches (the U-Net's GroupNorm does not mix samples, the losses average
over them; the weighted cross-entropies divide by the weight of the global batch, summed
across processes). Rank 0 alone shows progress, logs and writes.

In ``--out``, after every epoch: checkpoint.pt (written to a temporary file, then renamed; it
holds the model's state dict, the optimizer, the grad scaler, the epoch, the metrics so far,
the configuration and the RNG states, the images' normalisation, the class statistics of the
training masks and, for the binary losses, the decision threshold chosen on the validation
set, and loads with torch.load(..., weights_only=True)) and
metrics.csv (epoch, train_loss, val_loss, dice, iou, precision, recall on the validation
set, macro-averaged over the non-background classes); at the end, curves.png. ``--resume``
continues from checkpoint.pt: a run of 2 epochs and a run of 1 epoch resumed to 2 end with
the same weights. Without ``--resume``, a run refuses an ``--out`` that holds the checkpoint of
a different run.

The file reads top to bottom: configuration, setup (distributed, device, precision, seed),
data, model, losses, evaluation, checkpoints, the loop, and the benchmark.
"""

import argparse
import contextlib
import csv
import dataclasses
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset, TensorDataset
from tqdm import tqdm

from companion import training
from companion.data import segmentation_scores
from companion.folders import NORMALIZATION, DataError, FolderDataset
from companion.torch import (
    cost_sensitive_cross_entropy,
    dice_bce_loss,
    dice_loss,
    focal_loss,
    tversky_loss,
    weighted_bce_loss,
    weighted_cross_entropy,
)
from companion.torch.models import UNet
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
    "Runtime",
    "benchmark",
    "benchmark_step",
    "build_parser",
    "main",
    "make_model",
    "parse_config",
    "save_checkpoint",
    "setup",
    "train",
    "train_step",
]

CHECKPOINT = "checkpoint.pt"


# -- configuration ------------------------------------------------------------------------


@dataclasses.dataclass
class Config(training.TrainingOptions):
    """The script's options, one command-line flag each (``--help`` lists them).

    Those of :class:`~companion.training.TrainingOptions`, plus the system options (device,
    precision, compilation, data loading) and the output options of this script.
    """

    # The options both scripts share are in TrainingOptions; these are this script's.
    device: str = option(
        "auto", "auto: CUDA, then MPS, then CPU", "system", choices=("auto", "cpu", "cuda", "mps")
    )
    amp: str = option(
        "none",
        "mixed precision: bf16 autocast, or fp16 autocast with a grad scaler (CUDA only)",
        "system",
        choices=("none", "bf16", "fp16"),
    )
    compile: bool = option(False, "compile the model with torch.compile", "system")
    channels_last: bool = option(False, "channels-last memory format", "system")
    num_workers: int = option(0, "DataLoader worker processes (0: load in the main one)", "system")
    out: str = option(
        "runs/torch", "output folder: checkpoint.pt, metrics.csv, curves.png", "output"
    )
    resume: bool = option(False, "continue from OUT/checkpoint.pt up to --epochs", "output")
    benchmark: bool = option(
        False, "time training steps and print images per second; writes nothing", "output"
    )
    benchmark_steps: int = option(
        20, "--benchmark: timed steps, after 3 warm-up steps; the median is reported", "output"
    )
    quiet: bool = option(False, "no progress bars", "output")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, one flag per field of :class:`Config`."""
    return training.build_parser(
        Config, prog="python -m companion.torch.train", description=__doc__
    )


def torchrun_processes() -> int:
    """The number of processes that torchrun started (WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse the command line into a :class:`Config`; bad combinations exit with an error.

    With ``--resume``, the checkpoint in ``--out`` must be of a run with the same data, model
    and optimizer (:data:`~companion.training.MUST_MATCH_ON_RESUME`).
    """
    config, _ = _parse_command_line(argv)
    return config


def _parse_command_line(argv: list[str] | None) -> tuple[Config, dict | None]:
    """:func:`parse_config`'s configuration, and the checkpoint that ``--resume`` continues
    from (None without it), read once for the check and passed on to :func:`train`."""
    parser = build_parser()
    config = Config(**vars(parser.parse_args(argv)))
    training.check_common_options(parser, config)
    if config.benchmark_steps < 1:
        parser.error("--benchmark-steps must be >= 1")
    if config.num_workers < 0:
        parser.error("--num-workers must be >= 0")
    _check_system(parser, config)
    if config.benchmark and config.resume:
        parser.error("--benchmark writes no checkpoint and cannot be combined with --resume")
    path = Path(config.out) / CHECKPOINT
    if not config.resume:
        if path.is_file() and not config.benchmark:
            training.check_new_run(parser, config, load_checkpoint(path)["config"], path)
        return config, None
    if not path.is_file():
        parser.error(f"--resume, but there is no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    training.check_same_run(parser, config, checkpoint["config"], path)
    return config, checkpoint


def _check_system(parser: argparse.ArgumentParser, config: Config) -> None:
    """Exit via ``parser.error`` unless this machine and launch can run the system options."""
    processes = torchrun_processes()
    if config.batch_size % processes:
        parser.error(
            f"--batch-size {config.batch_size} must be a multiple of the {processes} processes"
        )
    if config.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if config.device == "mps" and not torch.backends.mps.is_available():
        parser.error("--device mps, but torch.backends.mps.is_available() is False")
    device_type = pick_device(config.device).type
    if config.amp == "fp16" and device_type != "cuda":
        parser.error(
            f"--amp fp16 needs CUDA (float16 autocast with a grad scaler); on {device_type} "
            "use --amp bf16 or --amp none"
        )
    # Without including_emulation=False, GPUs before Ampere count as supporting bfloat16 and
    # would run it emulated, slowly.
    bf16_native = device_type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if config.amp == "bf16" and device_type == "cuda" and not bf16_native:
        parser.error("--amp bf16, but this GPU does not support bfloat16; use --amp fp16")
    if processes > 1 and device_type == "mps":
        parser.error("torchrun with MPS is not supported: use --device cpu")


# -- setup: distributed, device, precision, seed ------------------------------------------


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA, then MPS, then CPU; under torchrun on CUDA, the process's local GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


@dataclasses.dataclass
class Runtime:
    """Where and how this process runs, as :func:`setup` found it."""

    device: torch.device
    rank: int  # this process's rank, 0 without torchrun
    world_size: int  # number of processes
    distributed: bool  # launched by torchrun: DistributedDataParallel
    autocast: Callable[[], contextlib.AbstractContextManager]  # the forward pass's precision

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def sum_dtype(self) -> torch.dtype:
        """The dtype of running sums of losses: float64, but MPS has no float64."""
        return torch.float32 if self.device.type == "mps" else torch.float64


def setup(config: Config) -> Runtime:
    """Join the process group under torchrun, pick the device and precision, seed everything."""
    device = pick_device(config.device)
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = 0
    if distributed:
        rank = int(os.environ["RANK"])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    # The same seed on every rank: identical initial weights and data everywhere. The data
    # generators use their own seeded Generators; the global NumPy and Python RNGs are seeded
    # (and checkpointed) for any code of the reader's that draws from them.
    random.seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002
    torch.manual_seed(config.seed)
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    return Runtime(device, rank, torchrun_processes() if distributed else 1, distributed, autocast)


# -- data ---------------------------------------------------------------------------------


def make_datasets(config: Config) -> tuple[TensorDataset, TensorDataset, dict]:
    """Training and validation sets, and the statistics the losses take from the training set
    (:func:`companion.training.make_splits`).

    Each item is ``(image, target)``, or ``(image, target, weight_map)`` for ``wce_map``:
    images ``(1, H, W)`` float32; binary targets ``(1, H, W)`` float32, multi-class targets
    ``(H, W)`` int64 class indices.
    """
    train_split, val_split, stats = training.make_splits(config)
    return _tensor_dataset(train_split, config), _tensor_dataset(val_split, config), stats


class FolderItems(Dataset):
    """A :class:`companion.folders.FolderDataset` as tensors, in the layout of
    :func:`make_datasets` (images ``(C, H, W)``), read lazily by the DataLoader's workers.

    A key is an index or ``(index, epoch)`` (:class:`EpochSampler`'s): the epoch seeds the
    random crop and augmentation of a training item, whichever worker or process reads it.
    """

    def __init__(self, items: FolderDataset):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, labels, weight_map = self.items.item(index, epoch)
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if self.items.binary:
            target = torch.from_numpy(labels.astype(np.float32))[None]
        else:
            target = torch.from_numpy(labels)
        if weight_map is None:
            return image, target
        return image, target, torch.from_numpy(np.ascontiguousarray(weight_map))


class EpochSampler(Sampler):
    """The indices of a DistributedSampler, each with the epoch: ``(index, epoch)``."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((index, self.epoch) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def make_folder_datasets(config: Config, splits: training.FolderSplits | None = None):
    """The training and validation sets of ``--data`` (:func:`companion.training.folder_splits`,
    which checks every file first), and the statistics of the training masks."""
    if splits is None:
        splits = training.folder_splits(config)
    config.in_channels = splits.channels
    return FolderItems(splits.train), FolderItems(splits.val), splits.stats


def _tensor_dataset(split: training.Split, config: Config) -> TensorDataset:
    """A split's arrays as tensors in the layout of :func:`make_datasets`."""
    if config.binary:
        targets = torch.from_numpy(split.targets)[:, None]
    else:
        targets = torch.from_numpy(split.targets).long()
    tensors = [torch.from_numpy(split.images)[:, None], targets]
    if split.weight_maps is not None:
        tensors.append(torch.from_numpy(split.weight_maps))
    return TensorDataset(*tensors)


def make_loaders(config: Config, runtime: Runtime, train_set, val_set):
    """Shuffled training batches of this rank's share; this rank's slice of the validation set.

    One process uses the same DistributedSampler (one replica) as many, so the global batch
    of every step is the same whatever the number of processes. Incomplete batches are
    dropped.
    """
    per_process = config.batch_size // runtime.world_size
    sampler = DistributedSampler(
        train_set,
        num_replicas=runtime.world_size,
        rank=runtime.rank,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
    )
    common = {
        "batch_size": per_process,
        "num_workers": config.num_workers,
        "pin_memory": runtime.device.type == "cuda",
        "persistent_workers": config.num_workers > 0,
    }
    if isinstance(train_set, FolderItems):
        sampler = EpochSampler(sampler)
    train_loader = DataLoader(train_set, sampler=sampler, drop_last=True, **common)
    shard = Subset(val_set, range(runtime.rank, len(val_set), runtime.world_size))
    val_loader = DataLoader(shard, shuffle=False, **common)
    return train_loader, val_loader, sampler


def to_device(batch, config: Config, device: torch.device):
    """``(images, targets, weight_map or None)`` on ``device``."""
    images, targets, *weight_map = (tensor.to(device, non_blocking=True) for tensor in batch)
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets, weight_map[0] if weight_map else None


# -- model --------------------------------------------------------------------------------


def make_model(config: Config, runtime: Runtime, head_bias=None):
    """The U-Net on the device (whose state dict is saved), the module that evaluates
    (compiled under --compile) and the one that trains (under torchrun wrapped in DDP, then
    compiled, so that the gradients of each bucket are sent while the backward goes on).

    ``head_bias`` (one value per output channel), if given, replaces the output layer's
    initial bias (``--prior-bias``), before DDP copies the weights of process 0 to the others.
    """
    model = UNet(config.in_channels, config.out_channels, config.base_channels, config.depth)
    if head_bias is not None:
        with torch.no_grad():
            model.head.bias.copy_(torch.as_tensor(head_bias, dtype=model.head.bias.dtype))
    model = model.to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if config.compile else model
    trained = forward
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        # DDP first, then compile (PyTorch's advice): the compiled backward is then
        # split at DDP's bucket boundaries; DDP around a compiled module would wait for
        # the whole backward before sending anything.
        trained = DistributedDataParallel(model, device_ids=device_ids)
        if config.compile:
            trained = torch.compile(trained)
    return model, forward, trained


# -- losses -------------------------------------------------------------------------------


def build_loss(config: Config, stats: dict, device: torch.device, processes: int = 1) -> Callable:
    """The loss of ``config.loss`` as ``loss_fn(logits, target, weight_map) -> scalar``.

    With ``processes > 1`` (training under torchrun), the weighted cross-entropies (``wce``,
    ``wce_map``) divide each process's weighted sum by the weight of the whole global batch
    (summed across processes), so that DistributedDataParallel's average of the gradients is
    the gradient of one process on the global batch. Evaluation pools the loss's terms over
    the whole validation set instead (:func:`build_loss_terms`).

    ``bce`` and ``wce`` are PyTorch's built-ins; the others are the package's
    (:mod:`companion.torch`). Every constant tensor is on ``device``.
    """
    name = config.loss
    if name == "bce":
        return lambda logits, target, weight_map: F.binary_cross_entropy_with_logits(logits, target)
    if name == "weighted_bce":
        pos_weight = config.pos_weight if config.pos_weight is not None else stats["pos_weight"]
        pos_weight = torch.tensor(pos_weight, dtype=torch.float32, device=device)
        return lambda logits, target, weight_map: weighted_bce_loss(
            logits, target, pos_weight=pos_weight
        )
    if name in ("dice", "dice_bce"):
        loss = dice_loss if name == "dice" else dice_bce_loss
        return lambda logits, target, weight_map: loss(logits, target)
    if name == "focal":
        return lambda logits, target, weight_map: focal_loss(
            logits, target, gamma=config.focal_gamma
        )
    if name == "tversky":
        alpha, beta = config.tversky_alpha, config.tversky_beta
        return lambda logits, target, weight_map: tversky_loss(
            logits, target, alpha=alpha, beta=beta
        )
    weighted = _weighted_sum_and_weight(config, stats, device)
    if weighted is not None and processes > 1:
        return _over_the_global_batch(weighted, processes)
    if name == "wce":
        class_weights = torch.tensor(stats["class_weights"], dtype=torch.float32, device=device)
        return lambda logits, target, weight_map: F.cross_entropy(
            logits, target, weight=class_weights
        )
    if name == "wce_map":
        # The map already holds the class weights (unet_weight_map(class_weights=...)).
        return lambda logits, target, weight_map: weighted_cross_entropy(
            logits, target, weight_map=weight_map
        )
    if name == "cost":
        cost = torch.tensor(
            cost_matrix(config.n_classes, config.miss_cost), dtype=torch.float32, device=device
        )
        return lambda logits, target, weight_map: cost_sensitive_cross_entropy(logits, target, cost)
    raise ValueError(f"unknown loss {name!r}")


def _weighted_sum_and_weight(config: Config, stats: dict, device: torch.device):
    """For the weighted means (``wce``, ``wce_map``): ``f(logits, target, weight_map) ->
    (weighted sum, sum of the weights)`` of a batch; None for the other losses."""
    if config.loss == "wce":
        class_weights = torch.tensor(stats["class_weights"], dtype=torch.float32, device=device)
        return lambda logits, target, weight_map: (
            F.cross_entropy(logits, target, weight=class_weights, reduction="sum"),
            class_weights[target].sum(),
        )
    if config.loss == "wce_map":
        return lambda logits, target, weight_map: (
            weighted_cross_entropy(logits, target, weight_map=weight_map, reduction="sum"),
            weight_map.sum(),
        )
    return None


def build_loss_terms(config: Config, stats: dict, device: torch.device) -> Callable:
    """The validation loss as ``terms(logits, target, weight_map) -> (numerator,
    denominator)``, whose sums over batches (and processes) divide into the loss of the set.

    For the weighted means, the weighted sum and the sum of the weights, so that the
    validation loss is the weighted mean over the whole set, however it is cut into batches
    and shared among processes; for the others, the batch's loss times its number of images,
    and that number (every loss is a mean over images, or over pixels of equal-sized images).
    """
    weighted = _weighted_sum_and_weight(config, stats, device)
    if weighted is not None:
        return weighted
    loss_fn = build_loss(config, stats, device)
    return lambda logits, target, weight_map: (
        loss_fn(logits, target, weight_map) * len(logits),
        torch.tensor(float(len(logits)), device=logits.device),
    )


def _over_the_global_batch(weighted_sum_and_weight: Callable, processes: int) -> Callable:
    """A weighted mean whose denominator is the weight of every process's share of the batch.

    DistributedDataParallel averages the processes' gradients, so each process's loss is its
    weighted sum times ``processes`` over the global weight.
    """

    def loss_fn(logits, target, weight_map):
        weighted_sum, weight = weighted_sum_and_weight(logits, target, weight_map)
        global_weight = weight.detach().to(torch.float32).clone()
        dist.all_reduce(global_weight)
        return weighted_sum * processes / global_weight

    return loss_fn


# -- evaluation ---------------------------------------------------------------------------


def predictions(logits: torch.Tensor, targets: torch.Tensor, binary: bool):
    """Predicted and true class indices, ``(N, H, W)`` each."""
    if binary:
        return (logits[:, 0] > 0).long(), targets[:, 0].long()
    return logits.argmax(dim=1), targets


@torch.no_grad()
def evaluate(
    model, loader, loss_terms, config: Config, runtime: Runtime
) -> tuple[dict[str, float], dict | None]:
    """Validation loss and pooled scores, summed over every rank's slice of the data
    (``loss_terms`` is :func:`build_loss_terms`'s); and, for a binary model, the decision
    threshold that the validation set gives (:func:`companion.training.choose_threshold`),
    else None."""
    model.eval()
    n_classes = 2 if config.binary else config.n_classes
    # The loss's numerator and denominator, summed over batches and processes.
    totals = torch.zeros(2, dtype=runtime.sum_dtype, device=runtime.device)
    confusion = torch.zeros(n_classes * n_classes, dtype=torch.int64, device=runtime.device)
    # Counts of the negative and the positive pixels per bin of predicted probability.
    bins = training.THRESHOLD_BINS
    histogram = torch.zeros(2 * bins, dtype=torch.int64, device=runtime.device)
    for batch in loader:
        images, targets, weight_map = to_device(batch, config, runtime.device)
        with runtime.autocast():
            logits = model(images)
        logits = logits.float()
        numerator, denominator = loss_terms(logits, targets, weight_map)
        totals[0] += numerator.to(totals.dtype)
        totals[1] += denominator.to(totals.dtype)
        predicted, truth = predictions(logits, targets, config.binary)
        confusion += torch.bincount(
            (truth * n_classes + predicted).flatten(), minlength=n_classes * n_classes
        )
        if config.binary:
            probability_bin = (torch.sigmoid(logits[:, 0]) * bins).long().clamp_(0, bins - 1)
            histogram += torch.bincount(
                (truth * bins + probability_bin).flatten(), minlength=2 * bins
            )
    if runtime.distributed:
        dist.all_reduce(totals)
        dist.all_reduce(confusion)
        dist.all_reduce(histogram)
    model.train()
    scores = segmentation_scores(confusion.view(n_classes, n_classes).cpu().numpy())
    threshold = None
    if config.binary:
        negatives, positives = histogram.view(2, bins).cpu().numpy()
        threshold = training.choose_threshold(
            positives, negatives, config.target_precision, config.target_recall
        )
    return {"val_loss": (totals[0] / totals[1]).item(), **scores}, threshold


# -- checkpoints and outputs --------------------------------------------------------------


def rng_states() -> dict:
    """The RNG states as tensors and plain containers, loadable with ``weights_only=True``."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            position,
            has_gauss,
            cached_gaussian,
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    """Restore the random number generators' states saved by :func:`rng_states`."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(  # noqa: NPY002
        (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    )
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, on the CPU: the RNG states must stay
    CPU tensors, and ``load_state_dict`` moves the rest to the model's device."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(checkpoint: dict, model, optimizer, scaler) -> tuple[int, list[dict]]:
    """Load a checkpoint's states into the run; return its epoch and its metrics so far.

    A run resumed with ``--amp fp16`` after one without it starts a fresh grad scaler: the
    saved one was disabled and holds no state, which ``GradScaler.load_state_dict`` refuses.
    """
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint["scaler"]:
        scaler.load_state_dict(checkpoint["scaler"])
    set_rng_states(checkpoint["rng"])
    return checkpoint["epoch"], checkpoint["history"]


def save_checkpoint(
    path: Path, model, optimizer, scaler, epoch, history, config, extras: dict | None = None
) -> None:
    """Write the training state to ``path`` atomically: a temporary file, then a rename
    (:func:`companion.training.replace_durably`). ``extras`` (plain values) are stored beside
    it: :func:`train` adds ``normalization``, ``statistics`` and, for binary losses,
    ``threshold``."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "history": history,
        "config": dataclasses.asdict(config),
        "rng": rng_states(),
        **(extras or {}),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    replace_durably(temporary, path)


def write_metrics(path: Path, history: list[dict]) -> None:
    """Write one row of ``METRIC_COLUMNS`` per epoch to ``path`` (a temporary file, a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    replace_durably(temporary, path)


# -- training -----------------------------------------------------------------------------


def train_step(trained, batch, loss_fn, optimizer, scaler, runtime: Runtime) -> torch.Tensor:
    """One forward and backward pass and one optimizer step; the loss, detached."""
    images, targets, weight_map = batch
    with runtime.autocast():
        logits = trained(images)
    # The loss in float32, whatever the forward pass's precision.
    loss = loss_fn(logits.float(), targets, weight_map)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` builds for a run, on the runtime's device."""

    train_set: Dataset  # a TensorDataset, or FolderItems with --data
    val_set: Dataset
    stats: dict  # the class statistics of the training masks
    model: UNet  # the U-Net, whose state dict is saved
    forward: torch.nn.Module  # the module that evaluates (compiled under --compile)
    trained: torch.nn.Module  # the module that trains (in DDP under torchrun)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable  # build_loss's
    loss_terms: Callable  # build_loss_terms's, for the validation loss


def prepare(
    config: Config, runtime: Runtime, splits: training.FolderSplits | None = None
) -> Prepared:
    """Data, model, optimizer, grad scaler and loss, all on the runtime's device; with
    ``--data``, from ``splits`` (read and checked here if None)."""
    if config.data is None:
        train_set, val_set, stats = make_datasets(config)
    else:
        train_set, val_set, stats = make_folder_datasets(config, splits)
    head_bias = training.prior_bias(stats["frequencies"]) if config.prior_bias else None
    model, forward, trained = make_model(config, runtime, head_bias)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=config.amp == "fp16")
    loss_fn = build_loss(config, stats, runtime.device, runtime.world_size)
    loss_terms = build_loss_terms(config, stats, runtime.device)
    return Prepared(
        train_set, val_set, stats, model, forward, trained, optimizer, scaler, loss_fn, loss_terms
    )


def train_epoch(prepared: Prepared, loader, epoch: int, config: Config, runtime: Runtime) -> float:
    """One pass over this rank's training batches; the mean loss of every process's steps."""
    loss_sum = torch.zeros((), dtype=runtime.sum_dtype, device=runtime.device)
    steps = 0
    progress = tqdm(
        loader,
        desc=f"epoch {epoch}/{config.epochs}",
        leave=False,
        # None: tqdm shows the bar only on a terminal.
        disable=True if config.quiet or not runtime.main_process else None,
    )
    for batch in progress:
        batch = to_device(batch, config, runtime.device)
        loss = train_step(
            prepared.trained, batch, prepared.loss_fn, prepared.optimizer, prepared.scaler, runtime
        )
        loss_sum += loss
        steps += 1
        if steps % 10 == 0 and not progress.disable:
            progress.set_postfix(loss=f"{loss.item():.4f}")
    progress.close()
    totals = torch.stack(
        [loss_sum, torch.tensor(steps, dtype=runtime.sum_dtype, device=runtime.device)]
    )
    if runtime.distributed:
        dist.all_reduce(totals)
    return (totals[0] / totals[1]).item()


def train(
    config: Config,
    runtime: Runtime,
    checkpoint: dict | None = None,
    splits: training.FolderSplits | None = None,
) -> list[dict]:
    """The training loop; returns the metrics of every epoch (of this and earlier runs).

    With ``--resume``, the run continues from ``checkpoint`` (the one :func:`main`'s check
    read), or from the one in ``--out`` if none is given. With ``--data``, the data are
    ``splits`` (:func:`main` read and checked them), or read here if None.

    Each checkpoint holds, beside the training state, the images' ``normalization``
    (:data:`companion.folders.NORMALIZATION`), the class ``statistics`` of the training masks
    and, for the binary losses, the decision ``threshold`` that the validation set gives the
    checkpoint's weights, ``{"value", "rule"}`` (:func:`companion.training.choose_threshold`).
    """
    prepared = prepare(config, runtime, splits)
    model, optimizer, scaler = prepared.model, prepared.optimizer, prepared.scaler
    train_loader, val_loader, sampler = make_loaders(
        config, runtime, prepared.train_set, prepared.val_set
    )
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT

    start_epoch, history = 0, []
    if config.resume:
        if checkpoint is None:
            checkpoint = load_checkpoint(checkpoint_path)
        start_epoch, history = restore_checkpoint(checkpoint, model, optimizer, scaler)
        if runtime.main_process:
            print(f"resuming from {checkpoint_path} after epoch {start_epoch}")
    if runtime.main_process:
        out.mkdir(parents=True, exist_ok=True)
        print(training.describe_statistics(prepared.stats, config.binary), flush=True)
    extras = {
        "normalization": NORMALIZATION,
        "statistics": training.plain_statistics(prepared.stats),
    }

    for epoch in range(start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss = train_epoch(prepared, train_loader, epoch, config, runtime)
        row = {"epoch": epoch, "train_loss": train_loss}
        scores, threshold = evaluate(
            prepared.forward, val_loader, prepared.loss_terms, config, runtime
        )
        row.update(scores)
        history.append(row)
        if threshold is not None:
            extras["threshold"] = threshold
        if runtime.main_process:
            save_checkpoint(
                checkpoint_path, model, optimizer, scaler, epoch, history, config, extras
            )
            write_metrics(out / METRICS, history)
            print(
                f"epoch {epoch}/{config.epochs}  "
                + "  ".join(f"{name} {row[name]:.4f}" for name in METRIC_COLUMNS[1:])
                + f"  ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    if runtime.main_process:
        if start_epoch >= config.epochs:
            print(f"{checkpoint_path} has already trained {start_epoch} epochs: nothing to do")
        if history:
            plot_curves(out / CURVES, history, f"U-Net, loss {config.loss}")
    return history


# -- benchmark ----------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (CUDA and MPS run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def benchmark_step(
    config: Config, runtime: Runtime, splits: training.FolderSplits | None = None
) -> Callable[[], float]:
    """A function that runs one training step on one batch (always the same) and returns its
    wall time in seconds, waiting for the device to finish."""
    prepared = prepare(config, runtime, splits)
    train_loader, _, _ = make_loaders(config, runtime, prepared.train_set, prepared.val_set)
    batch = to_device(next(iter(train_loader)), config, runtime.device)
    step = (prepared.trained, batch, prepared.loss_fn, prepared.optimizer, prepared.scaler)

    def timed_step() -> float:
        synchronize(runtime.device)
        started = time.perf_counter()
        train_step(*step, runtime)
        synchronize(runtime.device)
        return time.perf_counter() - started

    return timed_step


def benchmark(
    config: Config,
    runtime: Runtime,
    warmup: int = 3,
    splits: training.FolderSplits | None = None,
) -> BenchmarkResult:
    """Time training steps: the first (compilation) separately, then ``warmup - 1`` untimed
    ones, then ``config.benchmark_steps`` timed ones (:func:`companion.training.time_steps`)."""
    return training.time_steps(
        benchmark_step(config, runtime, splits), config.benchmark_steps, config.batch_size, warmup
    )


def describe(config: Config, runtime: Runtime) -> str:
    """One line on the precision, device, image size and batch of a benchmark."""
    precision = {"none": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[config.amp]
    options = [precision] + ["channels-last"] * config.channels_last + ["compiled"] * config.compile
    size = config.crop or config.image_size
    return (
        f"{', '.join(options)} on {runtime.device.type} x {runtime.world_size}, "
        + (f"{size}x{size}, " if size else "")
        + f"batch {config.batch_size}"
    )


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[dict] | BenchmarkResult:
    """Run the script on ``argv``: train and return every epoch's metrics, or benchmark."""
    config, checkpoint = _parse_command_line(argv)
    splits = None
    if config.data is not None:
        # Every file is checked before training, and before torchrun's processes connect.
        try:
            splits = training.folder_splits(config)
        except DataError as error:
            training.exit_with_data_error("python -m companion.torch.train", error)
        config.in_channels = splits.channels
    runtime = setup(config)
    try:
        if config.benchmark:
            result = benchmark(config, runtime, splits=splits)
            if runtime.main_process:
                print(f"{describe(config, runtime)}: {result.summary()}")
            return result
        return train(config, runtime, checkpoint, splits)
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
