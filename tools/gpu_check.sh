#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: tests/cuda, then the benchmarks on the GPU.
#
#     tools/gpu_check.sh [LOG_DIR]        # default: gpu-check/
#
# Run it from the repository root with the package importable (`make install`, or
# PYTHONPATH=. with PyTorch, and MONAI and Keras if those parts are wanted, installed). Each
# step has a time limit of its own (STEP_TIMEOUT seconds, default 300), so that one stuck step
# leaves the others' logs; each log goes to LOG_DIR. The exit status is that of the tests.
set -uo pipefail

LOG_DIR=${1:-gpu-check}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
PYTHON=${PYTHON:-python3}
mkdir -p "$LOG_DIR"
# Keras runs on the GPU here through its torch backend.
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0 KERAS_BACKEND=torch

step() {  # step NAME COMMAND...: run COMMAND with a time limit, its output also to NAME.log
    local name=$1
    shift
    local shown="$*"
    echo "== $name: ${shown%%$'\n'*}"  # the command's first line
    local start=$SECONDS
    timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee "$LOG_DIR/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - start)) s"
    return "$status"
}

step environment "$PYTHON" -c '
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device: these checks need a GPU (torch.cuda.is_available() is False)")
properties = torch.cuda.get_device_properties(0)
print(torch.cuda.get_device_name(0), f"{properties.total_memory / 2**30:.0f} GiB,",
      properties.multi_processor_count, "SMs, bf16:", torch.cuda.is_bf16_supported())
for name in ("keras", "monai"):
    try:
        print(name, __import__(name).__version__)
    except ImportError:
        print(name, "not installed: its part is skipped")
' || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv

step tests "$PYTHON" -m pytest tests/cuda -v -p no:cacheprovider ${PYTEST_ARGS:-}
tests_status=$?

# The shapes first (16 MiB and 10 MiB of logits: microseconds on a large GPU, where
# launch overhead counts); 16 times larger ones after the training benchmark.
step segmentation_losses "$PYTHON" benchmarks/segmentation_losses.py --device cuda --repeats 30 --warmup 5
step train_throughput "$PYTHON" benchmarks/train_throughput.py --device cuda \
    --image-size 256 --batch-size 32 --steps 20 \
    --variants fp32,bf16,channels_last,bf16+channels_last,bf16+channels_last+compile
step segmentation_losses_large "$PYTHON" benchmarks/segmentation_losses.py --device cuda \
    --repeats 20 --warmup 3 --binary-shape 64,1,1024,1024 --class-shape 16,10,512,512
step huber "$PYTHON" benchmarks/huber_torch.py --device cuda

exit "$tests_status"
