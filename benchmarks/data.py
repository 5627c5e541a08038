"""Section: data -- the translation token store at full corpus sizes (cold build, warm setup and peak RSS, each in
a fresh process; training steps/s, optionally against ``ATTNLAB_BENCH_BASELINE_REV``, a revision with
``attnlab.cli.build``), then the COCO annotation index (:mod:`benchmarks.data_coco`)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.data_coco import add_coco_figures
from benchmarks.generated import write_parallel_corpus
from benchmarks.machine import child_env, interleave, memory, run_child
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "Data: token store and annotation index at full size"
MiB = 2**20
#: Issue 9 targets for the full sizes.
TARGETS = {"multi30k": {"cold_s": 60.0, "warm_s": 5.0, "rss": 600 * MiB}, "wmt": {"rss": 2048 * MiB, "warm_s": 10.0}}
STEPS_RATIO_TARGET = 0.97


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less sensitive than wall time to other
    processes competing for the cores (the 2-core machine here is shared)."""
    return sum(os.times()[:2])


def measure_setup(args: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: import, baseline RSS, setup + 50 training batches, peak RSS."""
    import pytorch_lightning  # noqa: F401 - part of the import baseline, as in train.py
    import torch

    from attnlab.data.content_cache import read_build_log
    from attnlab.data.token_store import corpus_cache
    from attnlab.data.translation import TranslationFilesDataModule

    torch.set_num_threads(int(args.get("threads", 1)))
    baseline, started, cpu_started = memory("VmRSS"), time.perf_counter(), _cpu_seconds()
    dm = TranslationFilesDataModule(**args["data"])
    dm.setup("fit")
    setup_s, setup_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_started
    batches = sum(1 for _ in zip(range(50), dm.train_dataloader()))
    out = {"setup_s": setup_s, "setup_cpu_s": setup_cpu_s, "first_batches_s": time.perf_counter() - started - setup_s}
    store, peak = dm.store, memory("VmHWM")
    assert store is not None and batches > 0
    train = store.splits["train"]
    out |= {"baseline_rss": baseline, "peak_rss": peak, "peak_above_baseline": peak - baseline, "n_train": len(train)}
    for side in ("src", "tgt"):
        out[f"{side}_tokens_per_sentence"] = float(len(train.ids[side]) / max(1, len(train)))
    out |= {
        "id_dtype": store.manifest["splits"]["train"]["src_dtype"],
        "build_seconds": store.manifest.get("build_seconds", {}),
    }
    out["store_bytes"] = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    out["builds"] = len(read_build_log(corpus_cache(args["data"]["cache_dir"]).root))
    return out


def measure_steps(args: dict[str, Any]) -> dict[str, float]:
    """In a fresh process (on this checkout's attnlab or a baseline's): Lightning steps/s of the translation default."""
    import torch

    from benchmarks.harness import prepare_job, run_lightning

    torch.set_num_threads(int(args["threads"]))
    job = prepare_job("translation", seed=int(args["seed"]), scratch=Path(args["scratch"]), overrides=args["overrides"])
    r = run_lightning(job, int(args["steps"]), int(args["warmup"]))
    return {"steps_per_s": r.steps_per_second, "steps_per_cpu_s": r.steps_per_cpu_second}


def _baseline_checkout(rev: str, scratch: Path) -> Path:
    """``rev``'s tracked files (``git archive``) under ``scratch``; returns that folder."""
    from attnlab.project import project_root

    dest = scratch / f"baseline_{rev.replace('/', '_')}"
    if not (dest / "src").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev], cwd=project_root(), capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _add_step_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    from benchmarks.harness import tiny_overrides

    steps, warmup, repeats = settings.pick(full=(160, 20, 3), quick=(80, 10, 2), tiny=(4, 1, 1))
    scratch, rev = settings.scratch("data_steps"), os.environ.get("ATTNLAB_BENCH_BASELINE_REV")
    overrides = tiny_overrides("translation", settings.workdir) if settings.tiny else []
    envs = {"new": child_env()} | (
        {"baseline": child_env(root := _baseline_checkout(rev, scratch), root / "src")} if rev else {}
    )

    def measure(name: str, i: int) -> float:
        cache = f"paths.cache_dir={(scratch / f'cache_{name}').as_posix()}"
        args: dict[str, Any] = {
            "threads": settings.num_threads(),
            "seed": settings.seed,
            "steps": steps,
            "warmup": warmup,
        }
        args |= {"scratch": str(scratch / f"{name}_{i}"), "overrides": [*overrides, cache]}
        return run_child("benchmarks.data:measure_steps", args, timeout=1800, env=envs[name])["steps_per_s"]

    samples = interleave(repeats, envs, measure)
    sec["figures"].append(figure("default translation corpus: training steps/s (this code)", samples["new"], "steps/s"))
    if rev:
        ratios = [a / b for a, b in zip(samples["new"], samples["baseline"])]
        sec["figures"] += [
            figure(f"default translation corpus: training steps/s ({rev})", samples["baseline"], "steps/s"),
            figure(f"steps/s this code / {rev}", ratios, "x"),
        ]
        name = f"training steps/s vs {rev} (default corpus)"
        sec["targets"].append(target(name, ">=", STEPS_RATIO_TARGET, statistics.median(ratios), "x"))
    sec["notes"].append(
        f"Steps/s: experiment=translation, {steps} Lightning steps after {warmup} warm-up, "
        f"{settings.num_threads()} torch threads, one subprocess per repeat"
        + (
            f", interleaved with revision {rev}."
            if rev
            else "; set ATTNLAB_BENCH_BASELINE_REV=<git rev> to compare with older code."
        )
    )


def _corpus_targets(name: str, key: str, cold: dict[str, Any], warm: list[dict[str, Any]]) -> list[dict[str, Any]]:
    want, peak = TARGETS[key], max([cold["peak_above_baseline"], *(w["peak_above_baseline"] for w in warm)])
    cold_t = [target(f"{name}: cold build", "<=", want["cold_s"], cold["setup_s"], "s")] if "cold_s" in want else []
    return cold_t + [
        target(f"{name}: warm setup", "<=", want["warm_s"], statistics.median(w["setup_s"] for w in warm), "s"),
        target(f"{name}: peak RSS above import baseline (cold and warm)", "<=", want["rss"], peak, "bytes"),
    ]


def add_translation_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Cold build, warm setup and peak RSS per corpus size, training steps/s; the targets in full mode."""
    corpora = settings.pick(
        full=[("multi30k", "Multi30k-like", 1_000_000, 13.0), ("wmt", "WMT-like", 4_500_000, 24.0)],
        quick=[("multi30k", "Multi30k-like", 100_000, 13.0), ("wmt", "WMT-like", 300_000, 24.0)],
        tiny=[("multi30k", "Multi30k-like", 2_000, 13.0)],
    )
    for key, label, n, words in corpora:
        folder, t0 = settings.scratch(f"data_{key}"), time.perf_counter()
        paths = write_parallel_corpus(folder / "corpus", n, words, settings.seed)
        gen_s = time.perf_counter() - t0
        args = {"data": {**paths, "cache_dir": str(folder / "cache")}, "threads": settings.num_threads()}
        timeout = settings.pick(full=3600.0, quick=900.0, tiny=300.0)
        cold = run_child("benchmarks.data:measure_setup", args, timeout)
        warm = [run_child("benchmarks.data:measure_setup", args, timeout) for _ in range(settings.pick(3, 2, 1))]
        name, above = f"{label}, {n:,} pairs", "peak RSS above import baseline"
        sec["figures"] += [
            figure(f"{name}: generate the text files", gen_s, "s"),
            figure(f"{name}: cold build (first setup)", cold["setup_s"], "s"),
            figure(f"{name}: cold build, CPU time (all threads)", cold["setup_cpu_s"], "s"),
            figure(f"{name}: cold build, {above}", cold["peak_above_baseline"], "bytes"),
            figure(f"{name}: warm setup (another process)", [w["setup_s"] for w in warm], "s"),
            figure(f"{name}: warm, {above}", [w["peak_above_baseline"] for w in warm], "bytes"),
            figure(f"{name}: warm process, spawn to exit", [w["process_s"] for w in warm], "s"),
            figure(f"{name}: store on disk", cold["store_bytes"], "bytes"),
            figure(f"{name}: BPE tokens per source sentence", cold["src_tokens_per_sentence"], "tokens"),
        ]
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in cold["build_seconds"].items())
        sec["notes"].append(
            f"{name}: build phases {phases}; ids {cold['id_dtype']}; import baseline RSS "
            f"{cold['baseline_rss'] / MiB:.0f} MiB; builds logged {warm[-1]['builds']} (1 expected)."
        )
        sec["details"][key] = {"cold": cold, "warm": warm, "generate_s": gen_s, "pairs": n}
        sec["targets"] += _corpus_targets(name, key, cold, warm) if settings.mode == "full" else []
    _add_step_figures(settings, sec)
    sec["notes"].append(
        "Set-up figures: setup('fit') + 50 training batches in a fresh subprocess (data=translation_files defaults: "
        "BPE 8k/8k, min_frequency 2, max_len 100); peak RSS is the process's peak minus its RSS after importing torch, "
        "Lightning and the data module."
    )


@timed("data", TITLE)
def run(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Data at full size: the translation token store, then the COCO index."""
    add_translation_figures(settings, sec)
    add_coco_figures(settings, sec)
