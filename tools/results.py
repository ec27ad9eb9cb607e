"""Train the class-imbalance sweep at 256x256 and store every epoch's metrics in a CSV file.

Usage: python tools/results.py [--out CSV] [--dry-run]   (or: make results)

The class-imbalance chapter trains its losses on 32x32 images in under a minute; whether
its conclusions carry to larger images (the question's are 500x500) takes runs that are too
slow for the book's time budget. This script makes them with the training script, one run
per loss, start (the framework's initialization or --prior-bias) and seed, and appends each
run's metrics.csv to the CSV file the chapter reads, one row per epoch, with the exact
command (to which the runner adds --quiet and a temporary --out folder), the package
versions, the device and the date. Runs already in the file are skipped, so an interrupted
`make results` continues where it stopped; delete the file to start over.
"""

import argparse
import concurrent.futures
import csv
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from companion.training import replace_durably

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT / "book" / "results" / "class_imbalance_256.csv"
SCRIPT = "python -m companion.torch.train"
#: The setting of every run: 256x256 images (targets of about 8 pixels' radius, 1% of the
#: pixels), the U-Net with four poolings and 8 channels at its first level, ten epochs of Adam
#: at the scripts' default learning rate on 64 images in batches of 8: 80 steps, as many as
#: the chapter's runs on 32x32 images take.
COMMON = (
    "--image-size 256 --n-train 64 --n-val 32 --batch-size 8 --epochs 10 "
    "--base-channels 8 --depth 4 --device cpu"
)
LOSSES = ("bce", "weighted_bce", "focal", "dice_bce", "dice", "tversky")
SEEDS = (0, 1, 2)
COLUMNS = (
    "loss", "prior_bias", "seed", "epoch", "train_loss", "val_loss", "dice", "iou",
    "precision", "recall", "run_seconds", "command", "torch", "numpy", "python", "device",
    "date",
)  # fmt: skip


def runs() -> list[dict]:
    """Every run: each loss from both starts, but weighted_bce from the default start only
    (its balanced weights make the weighted prior one half, which is where it starts)."""
    planned = []
    for loss in LOSSES:
        for prior_bias in (False, True):
            if prior_bias and loss == "weighted_bce":
                continue
            for seed in SEEDS:
                flags = f"--loss {loss}{' --prior-bias' if prior_bias else ''} {COMMON}"
                planned.append(
                    {
                        "loss": loss,
                        "prior_bias": prior_bias,
                        "seed": seed,
                        "command": f"{SCRIPT} {flags} --seed {seed}",
                    }
                )
    return planned


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write the whole file to a temporary one, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    replace_durably(temporary, path)


def device_description() -> str:
    """The CPU's model name and its logical CPUs (the runs are on the CPU)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} threads"


def train(run: dict, folder: Path) -> tuple[list[dict], float]:
    """Run the training script on ``run``'s command; its metrics.csv rows and wall time."""
    arguments = shlex.split(run["command"])[3:]  # after "python -m companion.torch.train"
    started = time.perf_counter()
    command = [sys.executable, "-m", "companion.torch.train", *arguments]
    subprocess.run(
        [*command, "--quiet", "--out", str(folder)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # the epoch lines; metrics.csv holds them
    )
    seconds = time.perf_counter() - started
    with open(folder / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file)), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_CSV, help="the CSV file to extend")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands still to run, run nothing"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each in a process of its own (default 1); set OMP_NUM_THREADS so "
        "that jobs x threads does not exceed the cores",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    rows = read_rows(args.out)
    done = {row["command"] for row in rows}
    todo = [run for run in runs() if run["command"] not in done]
    if args.dry_run:
        print("\n".join(run["command"] for run in todo) or "nothing to run")
        return 0
    print(f"{len(todo)} of {len(runs())} runs to make, into {args.out}", flush=True)
    environment = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": device_description(),
    }

    def make(run: dict) -> tuple[dict, list[dict], float]:
        with tempfile.TemporaryDirectory(prefix="results-") as folder:
            return (run, *train(run, Path(folder)))

    # Each run is a process of its own; --jobs of them at a time, each file written as the
    # runs finish, in the order of the plan.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        finished = pool.map(make, todo)
        for run, metrics, seconds in tqdm(finished, total=len(todo), desc="runs", unit="run"):
            date = datetime.date.today().isoformat()
            for metric in metrics:
                row = {name: metric[name] for name in COLUMNS if name in metric}
                row.update(
                    loss=run["loss"],
                    prior_bias=run["prior_bias"],
                    seed=run["seed"],
                    run_seconds=f"{seconds:.0f}",
                    command=run["command"],
                    date=date,
                    **environment,
                )
                rows.append(row)
            write_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
