"""The example job scripts in examples/ stay runnable: valid shell, flags that exist.

The Slurm scripts run here under bash with stand-ins for ``srun`` and ``scontrol`` that
record their command lines, so the checks see the arguments after the shell expanded them:
the torchrun flags parse with torchrun's own parser, the training flags with the training
script's (companion.torch.train's, companion.keras.train's); the Keras script's task command
runs too, with a stand-in for ``python``, to check the TF_CONFIG each worker writes.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from torch.distributed.run import get_args_parser

from companion.torch.train import build_parser

REPOSITORY = Path(__file__).resolve().parents[1]
SBATCH_SCRIPT = REPOSITORY / "examples" / "slurm" / "train_torch_multinode.sbatch"
KERAS_SBATCH_SCRIPT = REPOSITORY / "examples" / "slurm" / "train_keras_multiworker.sbatch"
BASH = shutil.which("bash")
NODES = ("gpu-node-017", "gpu-node-018")
JOB_ID = "4242"

pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

# srun writes its arguments, one per line, and its environment, then waits like a running
# job step would.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD_DIR/srun.args"
env > "$RECORD_DIR/srun.env"
exec sleep "${FAKE_SRUN_SECONDS:-0}"
"""
FAKE_SCONTROL = """#!/bin/bash
if [[ "$1 $2" == "show hostnames" ]]; then
    printf '%s\\n' {nodes}
else
    printf '%s\\n' "$@" >> "$RECORD_DIR/scontrol.args"
fi
"""


# python writes its environment's TF_CONFIG and its arguments.
FAKE_PYTHON = """#!/bin/bash
printf '%s\\n' "$TF_CONFIG" > "$RECORD_DIR/python.tf_config"
printf '%s\\n' "$@" > "$RECORD_DIR/python.args"
"""


def sbatch_directives(script: Path = SBATCH_SCRIPT) -> dict[str, str]:
    """``#SBATCH --name=value`` lines as ``{name: value}`` (``""`` for a bare flag)."""
    directives = {}
    for line in script.read_text().splitlines():
        if match := re.fullmatch(r"#SBATCH\s+--([a-z-]+)(?:=(\S+))?\s*", line):
            directives[match[1]] = match[2] or ""
    return directives


@pytest.fixture
def slurm(tmp_path):
    """An environment in which the script runs as on the first node of a 2-node job."""
    bin_dir, record_dir = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record_dir.mkdir()
    for name, text in (
        ("srun", FAKE_SRUN),
        ("scontrol", FAKE_SCONTROL.replace("{nodes}", " ".join(NODES))),
        ("python", FAKE_PYTHON),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "RECORD_DIR": str(record_dir),
        "SCRATCH": str(tmp_path / "scratch"),
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_JOB_NAME": "unet-dice-bce",
        "SLURM_JOB_NODELIST": "gpu-node-[017-018]",
        "SLURM_NNODES": str(len(NODES)),
        "SLURM_CPUS_PER_TASK": "32",
    }
    return environment, record_dir


def run_script(environment: dict, script: Path = SBATCH_SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, str(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def launched(record_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """srun's own options, torchrun's arguments, and the training script's arguments."""
    srun_args = (record_dir / "srun.args").read_text().splitlines()
    start = srun_args.index("torchrun")
    torchrun_args = srun_args[start + 1 :]
    module = torchrun_args.index("companion.torch.train")
    return srun_args[:start], torchrun_args, torchrun_args[module + 1 :]


SCRIPTS = pytest.mark.parametrize(
    "script", [SBATCH_SCRIPT, KERAS_SBATCH_SCRIPT], ids=lambda path: path.stem
)


@SCRIPTS
def test_the_script_is_valid_bash(script):
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@SCRIPTS
def test_sbatch_directives_come_before_the_first_command(script):
    # sbatch stops reading #SBATCH lines at the first line that is not a comment.
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(
        index for index, line in enumerate(lines) if line.strip() and not line.startswith("#")
    )
    last_directive = max(index for index, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert last_directive < first_command


@SCRIPTS
def test_one_task_per_node_and_requeue_on_preemption(script):
    directives = sbatch_directives(script)
    assert directives["ntasks-per-node"] == "1"
    assert int(directives["nodes"]) >= 2
    assert int(directives["gpus-per-node"]) >= 1
    assert "requeue" in directives
    assert directives["signal"].startswith("B:USR1@")


def test_srun_starts_torchrun_once_per_node_with_a_c10d_rendezvous(slurm):
    environment, record_dir = slurm
    result = run_script(environment)
    assert result.returncode == 0, result.stderr
    srun_options, torchrun_args, _ = launched(record_dir)
    assert "--ntasks-per-node=1" in srun_options

    parser = get_args_parser()
    known = {flag for action in parser._actions for flag in action.option_strings}
    module = torchrun_args.index("companion.torch.train")
    for token in torchrun_args[:module]:
        if token.startswith("-"):
            assert token in known, f"torchrun has no option {token}"
    args = parser.parse_args(torchrun_args)
    assert args.module and args.training_script == "companion.torch.train"
    assert args.nnodes == str(len(NODES))
    # Without SLURM_GPUS_ON_NODE, as many processes as the job asks GPUs per node.
    assert args.nproc_per_node == sbatch_directives()["gpus-per-node"]
    assert args.rdzv_backend == "c10d"
    host, port = args.rdzv_endpoint.split(":")
    assert host == NODES[0]
    assert 1024 < int(port) < 65536
    assert args.rdzv_id == JOB_ID
    assert not args.standalone


def test_every_training_flag_exists_in_the_training_script(slurm, tmp_path):
    environment, record_dir = slurm
    assert run_script(environment).returncode == 0
    _, _, train_args = launched(record_dir)
    parser = build_parser()
    known = {flag for action in parser._actions for flag in action.option_strings}
    flags = [token for token in train_args if token.startswith("--")]
    assert flags, train_args
    for flag in flags:
        assert flag in known, f"companion.torch.train has no option {flag}"
    config = parser.parse_args(train_args)
    # The first run starts afresh, in a run directory on the storage named by SCRATCH.
    assert not config.resume
    assert Path(config.out) == tmp_path / "scratch" / "companion-runs" / "unet-dice-bce"
    assert Path(config.out).is_dir()
    # The global batch splits evenly over the nodes x GPUs processes.
    processes = int(environment["SLURM_NNODES"]) * int(sbatch_directives()["gpus-per-node"])
    assert config.batch_size % processes == 0


def test_a_requeued_job_resumes_from_the_checkpoint(slurm):
    environment, record_dir = slurm
    run_dir = Path(environment["SCRATCH"]) / "companion-runs" / "unet-dice-bce"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    result = run_script(environment)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    _, _, train_args = launched(record_dir)
    assert build_parser().parse_args(train_args).resume


def test_the_time_limit_signal_requeues_the_job(slurm, tmp_path):
    environment, record_dir = slurm
    log = tmp_path / "job.out"
    # A job step that runs until the signal. The script and its step get a process group of
    # their own, ended at the end; the log is a file, which the step keeps open after the
    # script exits (a pipe would not reach its end).
    with open(log, "w") as output:
        process = subprocess.Popen(
            [BASH, str(SBATCH_SCRIPT)],
            env={**environment, "FAKE_SRUN_SECONDS": "60"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while not (record_dir / "srun.args").exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "srun was never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGUSR1)
        process.wait(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert "requeueing job" in log.read_text()
    assert (record_dir / "scontrol.args").read_text().split() == ["requeue", JOB_ID]


# -- the Keras script: one worker per node, MultiWorkerMirroredStrategy from TF_CONFIG -----


def run_keras_task(environment: dict, record_dir: Path, rank: int) -> tuple[dict, list[str]]:
    """Run the Keras script, then the command its srun got as task ``rank`` would: the
    TF_CONFIG and the arguments that reach ``python -m companion.keras.train``."""
    result = run_script(environment, KERAS_SBATCH_SCRIPT)
    assert result.returncode == 0, result.stderr
    task = (record_dir / "srun.args").read_text().splitlines()
    start = task.index("bash")
    srun_environment = dict(
        line.split("=", 1)
        for line in (record_dir / "srun.env").read_text().splitlines()
        if "=" in line
    )
    result = subprocess.run(
        task[start:],
        env={**srun_environment, "SLURM_PROCID": str(rank)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    tf_config = json.loads((record_dir / "python.tf_config").read_text())
    python_args = (record_dir / "python.args").read_text().splitlines()
    assert python_args[:2] == ["-m", "companion.keras.train"]
    return tf_config, python_args[2:]


@pytest.mark.parametrize("rank", [0, 1])
def test_each_keras_task_writes_the_tf_config_of_its_rank(slurm, rank):
    environment, record_dir = slurm
    tf_config, _ = run_keras_task(environment, record_dir, rank)
    workers = tf_config["cluster"]["worker"]
    assert [worker.split(":")[0] for worker in workers] == list(NODES)
    assert len({worker.split(":")[1] for worker in workers}) == 1
    assert 1024 < int(workers[0].split(":")[1]) < 65536
    # Worker 0, on the first node, is the chief.
    assert tf_config["task"] == {"type": "worker", "index": rank}
    srun_options = (record_dir / "srun.args").read_text().splitlines()
    assert "--ntasks-per-node=1" in srun_options[: srun_options.index("bash")]


def test_every_keras_training_flag_exists_and_asks_for_multi_worker(slurm, tmp_path):
    from companion.keras.train import build_parser as keras_parser

    environment, record_dir = slurm
    _, train_args = run_keras_task(environment, record_dir, 1)
    parser = keras_parser()
    known = {flag for action in parser._actions for flag in action.option_strings}
    for flag in (token for token in train_args if token.startswith("--")):
        assert flag in known, f"companion.keras.train has no option {flag}"
    config = parser.parse_args(train_args)
    assert config.strategy == "multi-worker"
    assert not config.resume
    run_dir = tmp_path / "scratch" / "companion-runs" / environment["SLURM_JOB_NAME"]
    assert Path(config.out) == run_dir
    assert Path(config.out).is_dir()
    # The global batch splits evenly over the nodes x GPUs replicas.
    replicas = len(NODES) * int(sbatch_directives(KERAS_SBATCH_SCRIPT)["gpus-per-node"])
    assert config.batch_size % replicas == 0


def test_a_requeued_keras_job_resumes_from_the_backup(slurm):
    from companion.keras.train import build_parser as keras_parser

    environment, record_dir = slurm
    run_dir = Path(environment["SCRATCH"]) / "companion-runs" / environment["SLURM_JOB_NAME"]
    backup = run_dir / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epoch": 3}')
    result = run_script(environment, KERAS_SBATCH_SCRIPT)
    assert "resuming from" in result.stdout
    _, train_args = run_keras_task(environment, record_dir, 0)
    assert keras_parser().parse_args(train_args).resume
