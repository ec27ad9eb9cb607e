"""Run notebooks under nbval in numerical environments that round floats as other machines do.

Usage: python tools/numerics.py [--env NAME ...] [--jobs N] NOTEBOOK [...]
       (or: make test-numerics)

A notebook that trains or samples can hold an assertion that is true only for the rounding of
the machine that wrote it: training amplifies a difference in the last bit of a sum into
another trajectory. Each environment below changes the CPU kernels (and so the order of the
floating-point operations) the way another machine would, without another machine:

  aten-default   ATEN_CPU_CAPABILITY=default: PyTorch's kernels without AVX2 or AVX-512
  aten-avx2      ATEN_CPU_CAPABILITY=avx2: PyTorch's kernels of an AVX2 machine
  onednn-sse41   ONEDNN_MAX_CPU_ISA=SSE41: oneDNN's convolutions of a machine without AVX
  one-thread     OMP_NUM_THREADS=1 and one TensorFlow thread: sums split over no threads

Every assertion must hold in every environment; outputs that legitimately differ carry the
nbval-ignore-output tag. The script runs pytest --nbval once per environment and prints a
table of each notebook's result and wall time (the sum of its cells' times) per environment.
It exits with 1 if any notebook failed anywhere.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "one-thread": {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    },
}
# What the Makefile sets for every run: no start-up line in an output, and OpenMP threads that
# spin only briefly while they wait (--jobs runs notebooks side by side; see the Makefile).
QUIET = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    "GOMP_SPINCOUNT": "1000",
}


def run_environment(name: str, notebooks: list[Path], jobs: int) -> dict[str, tuple[bool, float]]:
    """``{notebook: (passed, seconds)}`` for one environment."""
    with tempfile.TemporaryDirectory(prefix="numerics-") as folder:
        report = Path(folder) / "report.xml"
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "--nbval", "--nbval-current-env", "--nbval-sanitize-with", "book/sanitize.cfg",
            f"--junitxml={report}", "-o", "junit_family=xunit1",
        ]  # fmt: skip
        if jobs > 1:
            command += ["-n", str(jobs), "--dist", "loadfile"]
        environment = {**os.environ, **QUIET, **ENVIRONMENTS[name]}
        settings = " ".join(f"{key}={value}" for key, value in ENVIRONMENTS[name].items())
        print(f"== {name}: {settings}", flush=True)
        subprocess.run([*command, *map(str, notebooks)], cwd=ROOT, env=environment, check=False)
        results = defaultdict(lambda: [True, 0.0])
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            notebook = Path(case.get("file") or case.get("classname", "")).name
            results[notebook][1] += float(case.get("time", 0.0))
            if case.find("failure") is not None or case.find("error") is not None:
                results[notebook][0] = False
    missing = {path.name for path in notebooks} - set(results)
    for notebook in missing:  # not even collected: count as a failure
        results[notebook] = [False, 0.0]
    return {notebook: tuple(result) for notebook, result in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="the .ipynb files to run")
    parser.add_argument(
        "--env",
        action="append",
        choices=list(ENVIRONMENTS),
        help="an environment to run (repeat for several; default: all)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="pytest-xdist workers (default 1)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"not a notebook file: {path}")
    names = args.env or list(ENVIRONMENTS)
    table = {name: run_environment(name, args.notebooks, args.jobs) for name in names}

    width = max(len(path.name) for path in args.notebooks)
    print(f"\n{'notebook':{width}}" + "".join(f"{name:>16}" for name in names))
    failed = False
    for path in args.notebooks:
        cells = []
        for name in names:
            passed, seconds = table[name][path.name]
            failed |= not passed
            cells.append(f"{'ok' if passed else 'FAILED'} {seconds:5.1f} s")
        print(f"{path.name:{width}}" + "".join(f"{cell:>16}" for cell in cells))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
