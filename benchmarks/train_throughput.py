"""Training throughput of the companion U-Net: fp32, bf16 autocast, channels-last, torch.compile.

Each variant trains the same U-Net (binary cross-entropy on companion.data.small_targets,
the same initial weights) with companion.torch.train's benchmark step: one training step
(forward, loss, backward, Adam step) on one batch. All variants are built in one process;
each takes its warm-up steps (the first, timed, holds the compilation under compile), then
the timed steps run in rounds over the variants, in rotated order, so that a drift in the
machine's speed falls on all alike. The median step gives images per second, reported as a
ratio to the first variant (fp32 eager by default); on CUDA, with the peak memory.

    python benchmarks/train_throughput.py                        # 128x128, batch 16, CPU or CUDA
    python benchmarks/train_throughput.py --steps 30 --variants fp32,bf16,compile
    python benchmarks/train_throughput.py --device cuda --image-size 512 \\
        --variants fp32,bf16+channels_last+compile

A variant is a "+"-joined set of fp32 (the default precision), bf16 (autocast), fp16
(autocast with a grad scaler, CUDA only), channels_last and compile.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from companion import training
from companion.torch import train

FLAGS = {
    "fp32": [],
    "bf16": ["--amp", "bf16"],
    "fp16": ["--amp", "fp16"],
    "channels_last": ["--channels-last"],
    "compile": ["--compile"],
}


@dataclasses.dataclass
class Config:
    variants: str = "fp32,bf16,channels_last,compile"  # comma-separated; the first is the baseline
    image_size: int = 128  # height and width of the images
    batch_size: int = 16  # images per training step
    steps: int = 20  # timed steps per variant; the median is reported
    warmup: int = 3  # untimed steps per variant, the first (the compilation) timed apart
    base_channels: int = 16  # U-Net width
    depth: int = 4  # U-Net depth
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda or mps
    seed: int = 0  # seed of the data and the initial weights


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--variants",
        default=defaults.variants,
        help=f"comma-separated variants, each a '+'-joined subset of {', '.join(FLAGS)}; "
        f"the first is the baseline (default: {defaults.variants})",
    )
    for name, help_text in (
        ("image_size", "height and width of the images"),
        ("batch_size", "images per training step"),
        ("steps", "timed steps per variant; the median is reported"),
        ("warmup", "untimed steps before them, >= 1 (the first holds the compilation)"),
        ("base_channels", "channels of the U-Net's first level"),
        ("depth", "number of poolings of the U-Net"),
        ("seed", "seed of the data and the initial weights"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=default,
            help=f"{help_text} (default: {default})",
        )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default=defaults.device,
        help="auto: CUDA, then MPS, then CPU (default: auto)",
    )
    config = Config(**vars(parser.parse_args(argv)))
    for variant in config.variants.split(","):
        unknown = set(variant.split("+")) - set(FLAGS)
        if unknown:
            parser.error(
                f"unknown variant part {sorted(unknown)} in {variant!r}: use {list(FLAGS)}"
            )
    if config.steps < 1 or config.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return config


def train_argv(config: Config, variant: str) -> list[str]:
    """The command line of companion.torch.train that benchmarks ``variant``."""
    argv = [
        "--benchmark",
        "--device", config.device,
        "--image-size", str(config.image_size),
        "--batch-size", str(config.batch_size),
        "--n-train", str(config.batch_size),
        "--n-val", "1",
        "--base-channels", str(config.base_channels),
        "--depth", str(config.depth),
        "--seed", str(config.seed),
        "--benchmark-steps", str(config.steps),
    ]  # fmt: skip
    for part in variant.split("+"):
        argv += FLAGS[part]
    return argv


def main(argv: list[str] | None = None) -> dict[str, training.BenchmarkResult]:
    config = parse_args(argv)
    variants = config.variants.split(",")
    steps, first, peak_memory = {}, {}, {}
    for variant in variants:
        train_config = train.parse_config(train_argv(config, variant))
        runtime = train.setup(train_config)
        steps[variant] = train.benchmark_step(train_config, runtime)
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(runtime.device)
            before = torch.cuda.memory_allocated(runtime.device)
        first[variant] = steps[variant]()
        for _ in range(config.warmup - 1):
            steps[variant]()
        if runtime.device.type == "cuda":
            # What this variant's steps add to what is already there.
            peak = torch.cuda.max_memory_allocated(runtime.device) - before
            peak_memory[variant] = peak / 2**30

    # Timed steps in rounds, each round over every variant in a rotated order, so that a
    # drift in the machine's speed (heat, other work) falls on all of them alike.
    seconds = {variant: [] for variant in variants}
    for round_index in range(config.steps):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            seconds[variant].append(steps[variant]())
    results = {
        variant: training.summarize(first[variant], seconds[variant], config.batch_size)
        for variant in variants
    }

    baseline = results[variants[0]]
    print(
        f"U-Net (base {config.base_channels}, depth {config.depth}) on {runtime.device}, "
        f"{config.image_size}x{config.image_size}, batch {config.batch_size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {config.steps} interleaved steps after {config.warmup} warm-up steps"
    )
    header = f"{'variant':32} {'images/s':>9} {'vs ' + variants[0]:>12} {'ms/step':>8}"
    print(header + (f" {'peak GiB':>9}" if peak_memory else ""))
    for variant, result in results.items():
        line = (
            f"{variant:32} {result.images_per_second:9.1f} "
            f"{result.images_per_second / baseline.images_per_second:12.2f} "
            f"{1000 * result.median_step_seconds:8.1f}"
        )
        if peak_memory:
            line += f" {peak_memory[variant]:9.2f}"
        print(line)
    for variant, result in results.items():
        if "compile" in variant.split("+"):
            compile_seconds = result.first_step_seconds - result.median_step_seconds
            print(f"compilation of {variant}: {compile_seconds:.1f} s (first step minus a step)")
    return results


if __name__ == "__main__":
    main()
