"""Is the --data loader fast enough? Images per second it delivers from PNG files, against
what the training step consumes.

A folder of 8-bit PNG images and masks (companion.data.small_targets, 512x512 by default) is
written to a temporary folder (or --folder). Then, with companion.torch.train's own pieces
(the same as ``python -m companion.torch.train --data DIR``):

- the validation pass (companion.training.folder_splits: every file read and checked once);
- the training loader, one pass over the training set with 0 and with 2 DataLoader workers
  (random crops and augmentation off, so each item is one PNG image and one PNG mask read and
  converted); the first batch, which starts the workers, is timed apart;
- the training step at the same size and batch (train.benchmark_step: forward, loss,
  backward, Adam step on one batch, median of --steps after --warmup).

The loader keeps up when it delivers more images per second than the step consumes. Each is
measured alone, so with workers running beside the step on the same cores the margin is
smaller than the ratio shows.

    python benchmarks/data_loader.py                       # 512x512, batch 4, 0 and 2 workers
    python benchmarks/data_loader.py --workers 0,1,2,4 --n-images 96
    python benchmarks/data_loader.py --image-size 256 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from companion import training
from companion.data import small_targets
from companion.torch import train


@dataclasses.dataclass
class Config:
    image_size: int = 512  # height and width of the PNG files
    n_images: int = 48  # pairs written; 1 in 6 held out for validation
    batch_size: int = 4  # images per training step and per loaded batch
    workers: str = "0,2"  # comma-separated DataLoader worker counts
    steps: int = 3  # timed training steps; the median is reported
    warmup: int = 1  # training steps before them, the first timed apart
    base_channels: int = 16  # U-Net width
    depth: int = 4  # U-Net depth
    device: str = "auto"  # of the training step: auto (CUDA, then MPS, then CPU), cpu, cuda, mps
    folder: str | None = None  # write the PNG files here (kept) instead of a temporary folder


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    for name, help_text in (
        ("image_size", "height and width of the PNG files"),
        ("n_images", "image and mask pairs written; 1 in 6 is held out for validation"),
        ("batch_size", "images per training step and per loaded batch"),
        ("steps", "timed training steps; the median is reported"),
        ("warmup", "training steps before them, >= 1; the first is timed apart"),
        ("base_channels", "channels of the U-Net's first level"),
        ("depth", "number of poolings of the U-Net"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=default,
            help=f"{help_text} (default: {default})",
        )
    parser.add_argument(
        "--workers",
        default=defaults.workers,
        help=f"comma-separated DataLoader worker counts (default: {defaults.workers})",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default=defaults.device,
        help="of the training step: auto (CUDA, then MPS, then CPU) (default: auto)",
    )
    parser.add_argument(
        "--folder", help="write the PNG files here and keep them (default: a temporary folder)"
    )
    config = Config(**vars(parser.parse_args(argv)))
    if config.steps < 1 or config.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    try:
        workers = [int(count) for count in config.workers.split(",")]
    except ValueError:
        parser.error(f"--workers {config.workers}: comma-separated integers, e.g. 0,2")
    if any(count < 0 for count in workers):
        parser.error("--workers: counts must be >= 0")
    validation = max(1, round(config.n_images / 6))
    if config.n_images - validation < 2 * config.batch_size:
        parser.error("--n-images must leave at least two batches for training")
    return config


def write_folder(root: Path, n: int, size: int) -> None:
    """``n`` pairs of small_targets images (8-bit, stretched over 0 .. 255) and 0/255 masks."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for start in range(0, n, 16):  # 16 at a time: 512x512 float32 images are 1 MiB each
        images, masks = small_targets(min(16, n - start), size=size, seed=start)
        for offset, (image, mask) in enumerate(zip(images, masks, strict=True)):
            pixels = np.clip(image * 60 + 100, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"{start + offset:05d}.png")
            Image.fromarray((mask * 255).astype(np.uint8)).save(
                root / "masks" / f"{start + offset:05d}.png"
            )


def train_argv(config: Config, folder: Path, workers: int) -> list[str]:
    """The command line of ``companion.torch.train --data`` that this benchmark times."""
    return [
        "--data", str(folder),
        "--val-fraction", str(1 / 6),
        "--device", config.device,
        "--batch-size", str(config.batch_size),
        "--num-workers", str(workers),
        "--base-channels", str(config.base_channels),
        "--depth", str(config.depth),
        "--benchmark-steps", str(config.steps),
        "--quiet",
    ]  # fmt: skip


def time_loader(loader) -> tuple[float, float, int]:
    """Seconds to the first batch, then images per second over the other batches."""
    started = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter() - started
    started, images = time.perf_counter(), 0
    for batch in batches:
        images += len(batch[0])
    seconds = time.perf_counter() - started
    return first, images / seconds if images else float("nan"), images


def main(argv: list[str] | None = None) -> dict[str, float]:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(config.folder) if config.folder else Path(temporary) / "data"
        started = time.perf_counter()
        write_folder(folder, config.n_images, config.image_size)
        print(
            f"{config.n_images} PNG pairs of {config.image_size}x{config.image_size} written to "
            f"{folder} in {time.perf_counter() - started:.1f} s"
        )
        results = {}
        first_config = train.parse_config(train_argv(config, folder, 0))
        started = time.perf_counter()
        splits = training.folder_splits(first_config)
        seconds = time.perf_counter() - started
        results["validation pass"] = config.n_images / seconds
        print(
            f"validation pass (read and check every file): {results['validation pass']:.1f} "
            f"images/s ({seconds:.1f} s)"
        )
        print(f"{'':44} {'images/s':>9} {'first batch':>12}")
        for workers in [int(count) for count in config.workers.split(",")]:
            train_config = train.parse_config(train_argv(config, folder, workers))
            runtime = train.setup(train_config)
            train_set, val_set, _ = train.make_folder_datasets(train_config, splits)
            loader, _, sampler = train.make_loaders(train_config, runtime, train_set, val_set)
            sampler.set_epoch(1)
            first, per_second, _ = time_loader(loader)
            name = f"loader, {workers} worker{'s' * (workers != 1)}"
            results[name] = per_second
            print(f"{name:44} {per_second:9.1f} {first:11.2f}s")
            del loader  # stops its workers before the next count starts its own
        runtime = train.setup(first_config)
        step = train.benchmark_step(first_config, runtime, splits)
        result = training.time_steps(step, config.steps, config.batch_size, config.warmup)
        name = f"training step ({train.describe(first_config, runtime)})"
        results["training step"] = result.images_per_second
        print(f"{name:44} {result.images_per_second:9.1f} {result.first_step_seconds:11.2f}s")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"U-Net base {config.base_channels}, depth {config.depth}"
    )
    for name, per_second in results.items():
        if name.startswith("loader"):
            ratio = per_second / results["training step"]
            verdict = "keeps up" if ratio > 1 else "is the bottleneck"
            print(f"{name}: {ratio:.1f} x the step's consumption, the loader {verdict}")
    return results


if __name__ == "__main__":
    main()
