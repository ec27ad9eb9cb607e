"""Training throughput of the companion U-Net: the PyTorch script against the Keras script on
the TensorFlow and the torch backends, and the PyTorch script's variants, side by side.

Each contender trains the same U-Net (binary cross-entropy on companion.data.small_targets)
with its script's own benchmark step, the one ``--benchmark`` times: one training step on one
batch (companion.torch.train.benchmark_step, companion.keras.train.benchmark_step). Each runs
in a process of its own (Keras's backend is fixed per process), started one after the other:
each takes its warm-up steps (the first, timed apart, holds the tracing and any compilation),
then the timed steps run in rounds, one step of every contender per round in a rotated order,
so that a drift in the machine's load falls on all of them alike. The median step gives
images per second, shown as a ratio to the first contender (the PyTorch script, fp32).

    python benchmarks/train_throughput.py              # 64x64 batch 8, then 128x128 batch 16
    python benchmarks/train_throughput.py --quick      # 64x64 batch 8, 5 steps: about a minute
    python benchmarks/train_throughput.py --sizes 128x16 \\
        --contenders torch,torch+bf16,torch+channels_last,torch+compile
    python benchmarks/train_throughput.py --device cuda --sizes 256x32 --contenders \\
        torch,torch+bf16,keras/tensorflow,keras/tensorflow+bf16,keras/torch,keras/torch+bf16

A contender is a script, ``torch`` (companion.torch.train) or ``keras/tensorflow`` or
``keras/torch`` (companion.keras.train on that Keras backend), with "+"-joined options: bf16
(autocast, or Keras's mixed_bfloat16 policy), fp16 (CUDA only), compile (torch.compile, or
jit_compile=True: XLA on TensorFlow), channels_last (torch only) and no_onednn
(keras/tensorflow only: TensorFlow's own CPU kernels, TF_ENABLE_ONEDNN_OPTS=0, which the Keras
script used before it turned oneDNN on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

SCRIPTS = ("torch", "keras/tensorflow", "keras/torch")
OPTIONS = {
    "bf16": ["--amp", "bf16"],
    "fp16": ["--amp", "fp16"],
    "compile": ["--compile"],
    "channels_last": ["--channels-last"],
    "no_onednn": [],
}
ONLY_FOR = {"channels_last": ("torch",), "no_onednn": ("keras/tensorflow",)}
# What a worker prints before each of its messages to the parent, on stdout.
MESSAGE = "@train_throughput "


@dataclasses.dataclass
class Config:
    contenders: str = (
        "torch,keras/tensorflow,keras/torch"  # comma-separated; the first is the baseline
    )
    sizes: str = "64x8,128x16"  # comma-separated IMAGE_SIZExBATCH_SIZE
    steps: int = 20  # timed steps per contender; the median is reported
    warmup: int = 3  # untimed steps per contender, the first (the compilation) timed apart
    base_channels: int = 16  # U-Net width
    depth: int = 4  # U-Net depth
    device: str = "auto"  # auto (the scripts' own choice), cpu, cuda or mps (PyTorch only)
    seed: int = 0  # seed of the data and the initial weights
    quick: bool = False  # 64x64 batch 8 only, 5 timed steps after 2 warm-up steps


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--contenders",
        default=defaults.contenders,
        help=f"comma-separated contenders, each one of {', '.join(SCRIPTS)} with '+'-joined "
        f"options from {', '.join(OPTIONS)}; the first is the baseline "
        f"(default: {defaults.contenders})",
    )
    parser.add_argument(
        "--sizes",
        default=defaults.sizes,
        help=f"comma-separated IMAGE_SIZExBATCH_SIZE, one table each (default: {defaults.sizes})",
    )
    for name, help_text in (
        ("steps", "timed steps per contender; the median is reported"),
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
        help="auto: each script's own choice, a GPU if there is one; mps: the PyTorch script "
        "only (default: auto)",
    )
    parser.add_argument(
        "--variants",
        help="the PyTorch script's variants, as before the Keras contenders came: fp32, bf16, "
        "fp16, channels_last, compile, '+'-joined; fp32,bf16+compile is --contenders "
        "torch,torch+bf16+compile",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="one table at this size (default with --batch-size: 128), instead of --sizes",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="one table at this batch (default with --image-size: 16), instead of --sizes",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="64x64 batch 8 only, --steps 5 --warmup 2: a first look in about a minute",
    )
    arguments = vars(parser.parse_args(argv))
    variants = arguments.pop("variants")
    if variants is not None:
        arguments["contenders"] = ",".join(
            "+".join(["torch", *(part for part in variant.split("+") if part != "fp32")])
            for variant in variants.split(",")
        )
    image_size, batch_size = arguments.pop("image_size"), arguments.pop("batch_size")
    if image_size is not None or batch_size is not None:
        arguments["sizes"] = f"{image_size or 128}x{batch_size or 16}"
    config = Config(**arguments)
    if config.quick:
        config = dataclasses.replace(config, sizes="64x8", steps=5, warmup=2)
    for contender in config.contenders.split(","):
        script, *options = contender.split("+")
        if script not in SCRIPTS:
            parser.error(f"unknown script {script!r} in {contender!r}: use one of {SCRIPTS}")
        for option in options:
            if option not in OPTIONS:
                parser.error(f"unknown option {option!r} in {contender!r}: use {list(OPTIONS)}")
            if script not in ONLY_FOR.get(option, SCRIPTS):
                parser.error(f"{option} applies to {' and '.join(ONLY_FOR[option])} only")
        if config.device == "mps" and script != "torch":
            parser.error(f"--device mps: the Keras script has no such device ({contender})")
    try:
        sizes(config)
    except ValueError:
        parser.error(f"--sizes {config.sizes!r}: expected IMAGE_SIZExBATCH_SIZE, e.g. 64x8")
    if config.steps < 1 or config.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return config


def sizes(config: Config) -> list[tuple[int, int]]:
    """``(image_size, batch_size)`` of each table; ValueError unless each is two positive
    integers joined by an x."""
    tables = []
    for size in config.sizes.split(","):
        image_size, batch_size = (int(part) for part in size.split("x"))
        if image_size < 1 or batch_size < 1:
            raise ValueError(size)
        tables.append((image_size, batch_size))
    return tables


def train_argv(config: Config, contender: str, image_size: int, batch_size: int) -> list[str]:
    """The command line of the contender's training script that benchmarks it."""
    argv = [
        "--benchmark",
        "--device", config.device,
        "--image-size", str(image_size),
        "--batch-size", str(batch_size),
        "--n-train", str(batch_size),
        "--n-val", "1",
        "--base-channels", str(config.base_channels),
        "--depth", str(config.depth),
        "--seed", str(config.seed),
    ]  # fmt: skip
    for option in contender.split("+")[1:]:
        argv += OPTIONS[option]
    return argv


def worker_environment(config: Config, contender: str) -> dict[str, str]:
    """The environment of a contender's process: its Keras backend and TensorFlow's kernels."""
    script, *options = contender.split("+")
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if script.startswith("keras/"):
        environment["KERAS_BACKEND"] = script.split("/")[1]
        environment["TF_ENABLE_ONEDNN_OPTS"] = "0" if "no_onednn" in options else "1"
        if config.device == "cpu":
            environment["KERAS_TORCH_DEVICE"] = "cpu"
    return environment


# -- the worker: one contender's process ------------------------------------------------


def send(message: dict) -> None:
    print(MESSAGE + json.dumps(message), flush=True)


def worker(script: str, argv: list[str], warmup: int) -> None:
    """Build the script's benchmark step, take the warm-up steps and report; then run one step
    per line read from stdin and report its seconds, until stdin closes."""
    peak_gib = None
    if script == "torch":
        import torch

        from companion.torch import train

        config = train.parse_config(argv)
        runtime = train.setup(config)
        step = train.benchmark_step(config, runtime)
        description = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        cuda = runtime.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(runtime.device)
            before = torch.cuda.memory_allocated(runtime.device)
    else:
        import keras

        from companion.keras import train

        config = train.parse_config(argv)
        keras.utils.set_random_seed(config.seed)
        with train.precision_policy(config.amp):
            step = train.benchmark_step(config)
        description = f"keras {keras.__version__}"
        cuda = False
    first = step()
    for _ in range(warmup - 1):
        step()
    if cuda:
        # What the steps add to what is already there.
        peak_gib = (torch.cuda.max_memory_allocated(runtime.device) - before) / 2**30
    send({"first": first, "peak_gib": peak_gib, "description": description})
    for _ in sys.stdin:
        send({"seconds": step()})


# -- the parent: contenders side by side --------------------------------------------------


class Contender:
    """A contender's worker process."""

    def __init__(self, config: Config, contender: str, image_size: int, batch_size: int):
        script = contender.split("+")[0]
        spec = json.dumps([script, train_argv(config, contender, image_size, batch_size)])
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", spec, str(config.warmup)],
            env=worker_environment(config, contender),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = self.receive()

    def receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MESSAGE):
                return json.loads(line[len(MESSAGE) :])
        self.process.wait()
        raise RuntimeError(f"a worker stopped with exit code {self.process.returncode}")

    def step(self) -> float:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return self.receive()["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure(config: Config, image_size: int, batch_size: int) -> dict:
    """Every contender's :class:`~companion.training.BenchmarkResult` and worker report."""
    from companion import training

    contenders = config.contenders.split(",")
    workers = {}
    try:
        for contender in contenders:
            workers[contender] = Contender(config, contender, image_size, batch_size)
        seconds = {contender: [] for contender in contenders}
        for round_index in range(config.steps):
            shift = round_index % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                seconds[contender].append(workers[contender].step())
    finally:
        for worker_process in workers.values():
            worker_process.close()
    return {
        contender: (
            training.summarize(workers[contender].ready["first"], seconds[contender], batch_size),
            workers[contender].ready,
        )
        for contender in contenders
    }


def main(argv: list[str] | None = None) -> dict[tuple[int, int], dict]:
    config = parse_args(argv)
    contenders = config.contenders.split(",")
    tables = {}
    for image_size, batch_size in sizes(config):
        results = measure(config, image_size, batch_size)
        tables[image_size, batch_size] = results
        baseline = results[contenders[0]][0]
        peak = any(ready["peak_gib"] is not None for _, ready in results.values())
        print(
            f"U-Net (base {config.base_channels}, depth {config.depth}), "
            f"{image_size}x{image_size}, batch {batch_size}, device {config.device}; "
            f"median of {config.steps} interleaved steps after {config.warmup} warm-up steps; "
            + "; ".join(sorted({ready["description"] for _, ready in results.values()}))
        )
        header = f"{'contender':32} {'images/s':>9} {'vs ' + contenders[0]:>12} {'ms/step':>8}"
        print(header + f" {'first step s':>12}" + (f" {'peak GiB':>9}" if peak else ""))
        for contender, (result, ready) in results.items():
            line = (
                f"{contender:32} {result.images_per_second:9.1f} "
                f"{result.images_per_second / baseline.images_per_second:12.2f} "
                f"{1000 * result.median_step_seconds:8.1f} {result.first_step_seconds:12.1f}"
            )
            if peak:
                line += f" {ready['peak_gib']:9.2f}" if ready["peak_gib"] is not None else " " * 10
            print(line)
        print()
    return tables


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        script, argv = json.loads(sys.argv[2])
        worker(script, argv, int(sys.argv[3]))
    else:
        main()
