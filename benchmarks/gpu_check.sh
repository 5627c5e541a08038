#!/usr/bin/env bash
# The whole GPU check in one script, run from the repository root on a CUDA machine:
#
#   OUT=/path/to/results bash benchmarks/gpu_check.sh
#
#   1. trainer=gpu (bf16-mixed) for both tasks, a few hundred steps each: steps/s and test metrics
#   2. the GPU tests (tests/test_gpu.py: attention kinds and GRUs under CUDA autocast, trainer=gpu for
#      both tasks, the benchmark's cuda plumbing)
#   3. python scripts/bench.py --device cuda --quick (the JSON is rewritten after every section, so a
#      run stopped by its time limit keeps the sections it finished)
#
# Each part has its own time limit (seconds; T_TRAIN per task, T_TESTS, T_BENCH) and a failing or
# timed-out part does not stop the others: 2 x 60 + 75 + 225 = 420 s at most, inside 8 minutes.
# Writes 7 files to $OUT (default logs/gpu_check): gpu_check.log (everything), train_translation.json,
# train_detection.json (their metrics.json), pytest_gpu.xml, bench_cuda_quick.json / .md, summary.md,
# and prints the summary table last. PYTHON picks the interpreter (default: python).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-$PWD/logs/gpu_check}"
PY="${PYTHON:-python}"
T_TRAIN="${T_TRAIN:-60}"
T_TESTS="${T_TESTS:-75}"
T_BENCH="${T_BENCH:-225}"
STEPS="${STEPS:-300}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PROJECT_ROOT="$PWD"
export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
STATUS=""

say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

# part NAME LIMIT CMD...: run CMD under `timeout`, output appended to the log, status remembered.
part() {
    local name="$1" limit="$2" start rc
    shift 2
    say "$name: start (limit ${limit}s): $*"
    start=$(date +%s)
    timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
    rc=$?
    local took=$(( $(date +%s) - start )) verdict="ok"
    [ "$rc" -ne 0 ] && verdict="FAILED (exit $rc)"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="TIMED OUT after ${limit}s"
    STATUS="${STATUS}${name}|${verdict}|${took}"$'\n'
    say "$name: $verdict in ${took}s"
}

say "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
"$PY" -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported(), \
'lightning', pl.__version__)" >> "$LOG" 2>&1

# 1. trainer=gpu, both tasks: STEPS steps, no validation beyond the sanity check and epoch ends, then test.
for task in translation detection; do
    # translation: 344 steps an epoch; detection: 125 (its JPEGs decoded in 4 workers).
    epochs=1 workers=0
    [ "$task" = detection ] && epochs=3 workers=4
    part "train $task" "$T_TRAIN" "$PY" train.py "experiment=$task" trainer=gpu "trainer.max_steps=$STEPS" \
        "trainer.max_epochs=$epochs" "data.num_workers=$workers" trainer.limit_val_batches=2 logger=csv \
        extras.print_config=false callbacks.rich_progress_bar=null "paths.log_dir=$WORK/logs" \
        "hydra.run.dir=$WORK/train_$task"
    cp "$WORK/train_$task/metrics.json" "$OUT/train_$task.json" 2>> "$LOG" || say "train $task: no metrics.json"
done

# 2. the GPU tests.
part "pytest -m gpu" "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py \
    "--junitxml=$OUT/pytest_gpu.xml"

# 3. the benchmark on the GPU.
part "bench --device cuda --quick" "$T_BENCH" "$PY" scripts/bench.py --device cuda --quick \
    --out "$OUT/bench_cuda_quick.json" --workdir "$WORK/bench"

# The summary: parts, then the runs' figures, then the benchmark's targets.
STATUS="$STATUS" "$PY" - "$OUT" > "$OUT/summary.md" 2>> "$LOG" <<'EOF'
import json, os, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = ["| part | status | seconds |", "|---|---|---|"]
rows += [f"| {line.replace('|', ' | ')} |" for line in os.environ["STATUS"].strip().splitlines()]
xml = out / "pytest_gpu.xml"
if xml.is_file():
    import xml.etree.ElementTree as ET

    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    rows.append(f"| gpu tests: {suite.get('tests')} run, {suite.get('failures')} failed, {suite.get('errors')} errors, "
                f"{suite.get('skipped')} skipped | | |")
rows += ["", "| trainer=gpu (bf16-mixed) | steps | steps/s (fit, incl. validation) | test metrics |", "|---|---|---|---|"]
for task, keys in (("translation", ("test/bleu", "test/chrf")), ("detection", ("test/map_50", "test/map"))):
    path = out / f"train_{task}.json"
    if not path.is_file():
        rows.append(f"| {task} | - | - | no metrics.json |")
        continue
    rec = json.loads(path.read_text())
    steps, secs = rec.get("global_step") or 0, rec.get("train_seconds") or 0
    shown = ", ".join(f"{k} {rec['metrics'].get(k, float('nan')):.4g}" for k in keys)
    rows.append(f"| {task} ({rec.get('status')}) | {steps} | {steps / secs if secs else float('nan'):.2f} | {shown} |")
bench = out / "bench_cuda_quick.json"
if bench.is_file():
    report = json.loads(bench.read_text())
    rows += ["", f"bench on {report['machine'].get('device_name')}: {len(report['sections'])} section(s) finished", "",
             "| section | target | value | met |", "|---|---|---|---|"]
    for sec in report["sections"].values():
        if sec.get("error"):
            rows.append(f"| {sec['title']} | section failed: {sec['error'][:80]} | | |")
        for t in sec["targets"]:
            value = "n/a" if t["value"] is None else f"{t['value']:.4g}"
            rows.append(f"| {sec['key']} | {t['name']} {t['op']} {t['threshold']:g} | {value} | {t['met']} |")
print("\n".join(rows))
EOF
say "done: $OUT"
cat "$OUT/summary.md"
rm -rf "$WORK"
