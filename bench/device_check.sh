#!/usr/bin/env bash
# The one script a GPU session runs, from the repository root: build the CUDA extension in place, print
# `fastgan info`, run the GPU tests, run the benchmark suites, and print one results table, last.
#
# Writes into ${OUT:-bench/out} (at most 7 files): build.log, pytest.log, bench.log, info.txt and the results
# as <date>-<gpu>-<commit>.md/.json/.png; copy the .md/.json worth keeping into bench/results/ and commit them.
# Must end within 8 minutes on an H100: the benchmark's time budget shrinks to fit what the build and the
# tests left of FASTGAN_CHECK_DEADLINE_S (default 450 s).
#
# Environment: FASTGAN_CUDA_ARCHS (default 90), FASTGAN_COMMIT (default: git rev-parse --short HEAD),
# FASTGAN_BENCH_BUDGET_S (default 300), PYTHON (default python3).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
START=$SECONDS
DEADLINE_S=${FASTGAN_CHECK_DEADLINE_S:-450}
OUT_DIR=${OUT:-bench/out}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
STATUS=0

echo "== build (log: $OUT_DIR/build.log)"
export FASTGAN_BUILD_CUDA=1 FASTGAN_CUDA_ARCHS=${FASTGAN_CUDA_ARCHS:-90}
if $PY -m pip install --no-build-isolation --no-deps -e . >"$OUT_DIR/build.log" 2>&1; then
    echo "pip install -e . succeeded ($((SECONDS - START)) s)"
else
    echo "pip install -e . FAILED; the last 60 lines of its log:"
    tail -n 60 "$OUT_DIR/build.log"
    echo "-- falling back to: setup.py build_ext --inplace"
    if $PY setup.py build_ext --inplace >>"$OUT_DIR/build.log" 2>&1; then
        echo "build_ext --inplace succeeded ($((SECONDS - START)) s)"
    else
        echo "build_ext --inplace FAILED too; the last 60 lines of the log:"
        tail -n 60 "$OUT_DIR/build.log"
        STATUS=1
    fi
fi

echo
echo "== fastgan info"
$PY -m fastgan info 2>&1 | tee "$OUT_DIR/info.txt"

echo
echo "== GPU tests (log: $OUT_DIR/pytest.log)"
timeout "${FASTGAN_PYTEST_TIMEOUT_S:-200}" $PY -m pytest -m "gpu or kernels" tests -q -rs >"$OUT_DIR/pytest.log" 2>&1
PYTEST_RC=$?
tail -n 30 "$OUT_DIR/pytest.log"
# 5: no test collected
if [ "$PYTEST_RC" -ne 0 ] && [ "$PYTEST_RC" -ne 5 ]; then STATUS=1; fi

echo
BUDGET=$((DEADLINE_S - (SECONDS - START) - 60))  # 60 s for the case running when the budget ends, and the report
if [ "$BUDGET" -gt "${FASTGAN_BENCH_BUDGET_S:-300}" ]; then BUDGET=${FASTGAN_BENCH_BUDGET_S:-300}; fi
if [ "$BUDGET" -lt 30 ]; then BUDGET=30; fi
BENCH_DIR=$(mktemp -d)
echo "== fastgan bench --budget-s $BUDGET (log: $OUT_DIR/bench.log)"
# results.md/json are rewritten after every case, so a run stopped by timeout still leaves what it measured
timeout $((BUDGET + 75)) $PY -m fastgan bench --suite cond_batch_norm --suite conv_transpose2d --suite gradient_penalty --suite spectral_norm --suite fid --suite codebook_search --suite masked_conv2d --suite pixelcnn_sampling --suite train_step --suite convert --out "$BENCH_DIR" --budget-s "$BUDGET" >"$OUT_DIR/bench.log" 2>&1
BENCH_RC=$?
[ "$BENCH_RC" -ne 0 ] && { echo "fastgan bench exited with $BENCH_RC; its last 40 lines:"; tail -n 40 "$OUT_DIR/bench.log"; STATUS=1; }

GPU=$($PY - <<'EOF'
import re
import torch
if not torch.cuda.is_available():
    print("nogpu")
else:
    name = torch.cuda.get_device_name(0).lower().replace("nvidia", "")
    m = re.search(r"\b([a-z]{1,2}\d{2,4}[a-z]?)\b", name)  # h100, h200, a100, l40s
    print(m.group(1) if m else re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:24] or "gpu")
EOF
)
COMMIT=${FASTGAN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
STEM="$(date -u +%Y-%m-%d)-${GPU:-gpu}-$COMMIT"
for ext in md json png; do
    [ -f "$BENCH_DIR/results.$ext" ] && cp "$BENCH_DIR/results.$ext" "$OUT_DIR/$STEM.$ext"
done

echo
echo "== summary"
echo "build: $([ -f "$OUT_DIR/build.log" ] && grep -q '"built": true' fastgan/_build_info.json 2>/dev/null \
    && echo 'CUDA extension built' || echo 'CUDA extension NOT built (see build.log)')"
echo "pytest -m gpu: exit $PYTEST_RC; $(grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)' \
    "$OUT_DIR/pytest.log" | tail -n 1 || true)"
echo "bench: exit $BENCH_RC; results in $OUT_DIR/$STEM.{md,json,png}"
echo "elapsed: $((SECONDS - START)) s"
echo
if [ -f "$OUT_DIR/$STEM.md" ]; then
    cat "$OUT_DIR/$STEM.md"
    rm -rf "$BENCH_DIR"
else
    echo "no results table: fastgan bench wrote no results.md"
    STATUS=1
fi
exit $STATUS
