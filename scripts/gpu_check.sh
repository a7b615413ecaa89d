#!/usr/bin/env bash
# The GPU checks of issues 12-14, torch backend, TF32 off (twinnn's default), as one script
# for a lent GPU machine: the torch test suite on the GPU, the data-parallel GPU path and the
# GPU benchmarks. Run from the repository root; logs and JSON go to $OUT (default /tmp/gpu_out).
# Needs torch with CUDA, numpy, safetensors, tqdm, pytest, pytest-xdist, pytest-timeout and
# hypothesis; Keras 3 for the benchmarks' third column (wheels in .whl/ are installed to
# /tmp/site when present). Every part has its own time limit, so one hang cannot eat the rest.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TWINNN_BACKEND=torch TWINNN_DEVICE=gpu TWINNN_TF32=0 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
stamp() { echo "== $(date +%T) $*"; }

stamp versions
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"

stamp "tests (torch on the GPU) and the data-parallel check, side by side"
timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -p no:cacheprovider -v --tb=short -rfE \
    -n "${WORKERS:-10}" --timeout 150 --backend torch ${TEST_FILES:-tests} \
    --ignore=tests/test_distributed.py --ignore=tests/test_launcher.py \
    ${TESTS_K:+-k "$TESTS_K"} >"$OUT/tests.log" 2>&1 &
tests_pid=$!
timeout 200 $PY -m pytest -p no:cacheprovider -q --tb=short -rfE --backend torch \
    tests/test_distributed.py -k "(shards and not two_process and not deterministic_reduce) or world_of_one or slices or bad_data or gpus" \
    >"$OUT/dp_tests.log" 2>&1
timeout 200 $PY scripts/gpu_dp_check.py >"$OUT/dp_check.log" 2>&1
echo "dp check exit $?" >>"$OUT/dp_check.log"
wait "$tests_pid"
echo "tests exit $?" >>"$OUT/tests.log"
tail -n 3 "$OUT/dp_tests.log"
cat "$OUT/dp_check.log"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | tail -n 40

if [ -z "${SKIP_BENCH:-}" ]; then
    stamp "benchmarks (torch, GPU)"
    if ls .whl/*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    timeout "${BENCH_TIMEOUT:-200}" $PY -m benchmarks --backend torch --device gpu \
        --timing-only --repeats "${REPEATS:-9}" ${BENCH_WORKLOADS:---workload lm_lstm \
        --workload lm_lstm_nodrop --workload lstm_len --workload cnn_small \
        --workload transformer_small} --json "$OUT/bench_gpu.json" >"$OUT/bench.log" 2>&1
    echo "bench exit $?" >>"$OUT/bench.log"
    cat "$OUT/bench.log"
    stamp "where the GPU step time goes (torch.profiler)"
    timeout "${PROFILE_TIMEOUT:-120}" $PY -m benchmarks.profile_gpu >"$OUT/profile.log" 2>&1
    echo "profile exit $?" >>"$OUT/profile.log"
    grep -v "^STAGE\|USDT\|profiler_" "$OUT/profile.log"
fi
stamp done
