#!/usr/bin/env bash
# All GPU benchmarks in one run on a GPU machine: bake the full-size random-weights models
# and run bench/gpu.py on them, within a fixed time budget.
#
#     bash bench/gpu_all.sh        (on the GPU machine, from the repository root)
#
# Expects, beside the checkout (both ignored by git, carried to the machine):
#   .whl/  wheels of the packages the machine lacks (cp312, manylinux): pydantic, pydantic-core,
#          annotated-types, typing-inspection, typing-extensions, pydantic-settings,
#          python-dotenv, diffusers, torchsde, trampoline, compel
#   .gpu/  bpe_simple_vocab_16e6.txt.gz, the CLIP BPE table the bake builds tokenizers from
# Writes gpu.log and RESULTS-gpu.md (the bench's rows) into $OUT (else ./gpu-out).
# Budget: SD 1.5 first; SDXL only while time is left (GPU_ALL_BUDGET_S, default 540 s in all;
# no new step starts after GPU_ALL_LAST_START_S, default 420 s).

set -u
set -o pipefail

START=$SECONDS
BUDGET=${GPU_ALL_BUDGET_S:-540}
LAST_START=${GPU_ALL_LAST_START_S:-420}
OUT=${OUT:-$PWD/gpu-out}
MODELS=${GPU_ALL_MODELS_DIR:-/tmp/models}
SITE=${GPU_ALL_SITE:-/tmp/site}
LOG=$OUT/gpu.log
RESULTS=$OUT/RESULTS-gpu.md
mkdir -p "$OUT" "$MODELS"

export PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1
export TRANSFORMERS_VERBOSITY=error
export SDWORKER_CLIP_BPE=$PWD/.gpu/bpe_simple_vocab_16e6.txt.gz
export PYTHONPATH=$SITE:$PWD/src

elapsed() { echo $((SECONDS - START)); }
left() { echo $((BUDGET - (SECONDS - START))); }
say() { echo "[gpu_all +$(elapsed)s] $*" | tee -a "$LOG"; }

# step NAME LIMIT_S COMMAND...: run with a time limit, log its output, rc and wall time
step() {
    local name=$1 limit=$2
    shift 2
    local remaining
    remaining=$(left)
    if ((limit > remaining)); then limit=$remaining; fi
    if ((limit < 10)); then
        say "SKIP $name: ${remaining}s left of the budget"
        return 99
    fi
    say "START $name (limit ${limit}s): $*"
    local t0=$SECONDS rc
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=$?
    if ((rc == 124 || rc == 137)); then
        say "END $name: TIMED OUT after $((SECONDS - t0))s (rc=$rc)"
    else
        say "END $name: rc=$rc in $((SECONDS - t0))s"
    fi
    return $rc
}

may_start() {
    if (($(elapsed) >= LAST_START)); then
        say "SKIP $1: $(elapsed)s elapsed, no new step after ${LAST_START}s"
        return 1
    fi
}

say "checkout $(pwd), out $OUT, budget ${BUDGET}s"

step install 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl
ENV_PY=$(cat <<'PY'
import torch, diffusers, transformers, huggingface_hub, accelerate, pydantic
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print("diffusers", diffusers.__version__, "transformers", transformers.__version__,
      "huggingface_hub", huggingface_hub.__version__, "accelerate", accelerate.__version__,
      "pydantic", pydantic.__version__)
import sdworker, sdworker.runpod.adapter, sdworker.service, sdworker.gpu.generate
print("sdworker", sdworker.__version__, "imports ok")
PY
)
step gpu-info 30 bash -c 'nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; echo "cpus $(nproc)"; python3 --version'
step versions 90 python3 -c "$ENV_PY"

# SD 1.5 first: the priority
if step bake-sd15 200 python3 -m sdworker bake random-sd15 --models-dir "$MODELS"; then
    step bench-sd15 300 python3 bench/gpu.py --model random-sd15 --models-dir "$MODELS" \
        --size 512 --steps 25 --requests 8 --clients 8 --results "$RESULTS"
else
    say "bake-sd15 failed: bench-sd15 not run"
fi

# SDXL while time is left; the fp32 side only when there is room for it
if may_start bake-sdxl; then
    if step bake-sdxl 200 python3 -m sdworker bake random-sdxl --models-dir "$MODELS"; then
        if may_start bench-sdxl; then
            if (($(left) >= 260)); then
                step bench-sdxl 330 python3 bench/gpu.py --model random-sdxl --models-dir "$MODELS" \
                    --size 1024 --steps 25 --requests 4 --clients 4 --results "$RESULTS"
            elif (($(left) >= 90)); then
                say "only $(left)s left: SDXL without the fp32 side"
                step bench-sdxl 330 python3 bench/gpu.py --model random-sdxl --models-dir "$MODELS" \
                    --size 1024 --steps 25 --requests 4 --clients 4 --skip-fp32 --results "$RESULTS"
            else
                say "SKIP bench-sdxl: only $(left)s left"
            fi
        fi
    else
        say "bake-sdxl failed: bench-sdxl not run"
    fi
fi

nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
du -sh "$MODELS"/* 2>&1 | tee -a "$LOG"
if [ -f "$RESULTS" ]; then
    say "rows:"
    tee -a "$LOG" <"$RESULTS"
fi
say "done"
exit 0
