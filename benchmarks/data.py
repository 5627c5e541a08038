"""Section: data at full size -- the translation token store (cold build, warm setup, peak RSS in fresh processes;
steps/s, optionally vs ``ATTNLAB_BENCH_BASELINE_REV``) and, on a COCO-2017-sized set, the annotation index (first /
warm ``CocoDataModule`` setup vs pycocotools ``COCO()``, memory and steps/s with 2 DataLoader workers vs 0)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.generated import COCO2017_TRAIN, write_coco_sized, write_parallel_corpus
from benchmarks.harness import job_for, run_lightning, tiny_overrides
from benchmarks.machine import child_env, interleave, memory, run_child
from benchmarks.report import compare, figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "Data: token store and annotation index at full size"
MiB = 2**20
#: Issue 9 targets for the full sizes.
TARGETS = {"multi30k": {"cold_s": 60.0, "warm_s": 5.0, "rss": 600 * MiB}, "wmt": {"rss": 2048 * MiB, "warm_s": 10.0}}
STEPS_RATIO_TARGET = 0.97
_SPLITS = {
    "train": {"images": "images/train", "annotations": "annotations/instances_train.json"},
    "val": {"images": "images/val", "annotations": "annotations/instances_val.json"},
    "test": None,
}


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (less sensitive to a shared machine than wall time)."""
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

    from benchmarks.harness import prepare_job

    torch.set_num_threads(int(args["threads"]))
    job = prepare_job("translation", seed=int(args["seed"]), scratch=Path(args["scratch"]), overrides=args["overrides"])
    return {"steps_per_s": run_lightning(job, int(args["steps"]), int(args["warmup"])).steps_per_second}


def _baseline_checkout(rev: str, scratch: Path) -> Path:
    """``rev``'s tracked files (``git archive``) under ``scratch``; returns that folder."""
    from attnlab.project import project_root

    dest = scratch / f"baseline_{rev.replace('/', '_')}"
    if not (dest / "src").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev], cwd=project_root(), capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _step_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    steps, warmup, repeats = settings.pick(full=(160, 20, 3), quick=(80, 10, 2), tiny=(4, 1, 1))
    scratch, rev = settings.scratch("data_steps"), os.environ.get("ATTNLAB_BENCH_BASELINE_REV")
    overrides = tiny_overrides("translation", settings.workdir) if settings.tiny else []
    envs = {"new": child_env()}
    if rev:
        envs["baseline"] = child_env(root := _baseline_checkout(rev, scratch), root / "src")
    args = {"threads": settings.num_threads(), "seed": settings.seed, "steps": steps, "warmup": warmup}

    def measure(name: str, i: int) -> float:
        cache = f"paths.cache_dir={(scratch / f'cache_{name}').as_posix()}"
        job = args | {"scratch": str(scratch / f"{name}_{i}"), "overrides": [*overrides, cache]}
        return run_child("benchmarks.data:measure_steps", job, timeout=1800, env=envs[name])["steps_per_s"]

    samples, label = interleave(repeats, envs, measure), "default translation corpus: training steps/s"
    if not rev:
        sec["figures"].append(figure(f"{label} (this code)", samples["new"], "steps/s"))
        return
    names = (f"{label} (this code)", f"{label} ({rev})", f"steps/s this code / {rev}")
    ratio = compare(sec, names, samples["new"], samples["baseline"], "steps/s")
    sec["targets"].append(target(f"training steps/s vs {rev} (default corpus)", ">=", STEPS_RATIO_TARGET, ratio, "x"))


def _corpus_targets(name: str, key: str, cold: dict[str, Any], warm: list[dict[str, Any]]) -> list[dict[str, Any]]:
    want, peak = TARGETS[key], max([cold["peak_above_baseline"], *(w["peak_above_baseline"] for w in warm)])
    cold_t = [target(f"{name}: cold build", "<=", want["cold_s"], cold["setup_s"], "s")] if "cold_s" in want else []
    return cold_t + [
        target(f"{name}: warm setup", "<=", want["warm_s"], statistics.median(w["setup_s"] for w in warm), "s"),
        target(f"{name}: peak RSS above import baseline (cold and warm)", "<=", want["rss"], peak, "bytes"),
    ]


def add_translation_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Cold build, warm setup and peak RSS per corpus size, training steps/s; the targets in full mode."""
    sizes = settings.pick(full=(1_000_000, 4_500_000), quick=(100_000, 300_000), tiny=(2_000, None))
    corpora = [("multi30k", "Multi30k-like", sizes[0], 13.0), ("wmt", "WMT-like", sizes[1], 24.0)]
    for key, label, n, words in (c for c in corpora if c[2]):
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
        sec["notes"].append(f"{name}: builds logged {warm[-1]['builds']} (1 expected).")
        sec["details"][key] = {"cold": cold, "warm": warm, "generate_s": gen_s, "pairs": n}
        sec["targets"] += _corpus_targets(name, key, cold, warm) if settings.mode == "full" else []
    _step_figures(settings, sec)


def _rollup(pids: list[int], field: str) -> int:
    """Sum of one ``/proc/<pid>/smaps_rollup`` field (``Pss``, ``Pss_Anon``) over ``pids``, in bytes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
    return total


def _footprint(pids: list[int]) -> int:
    """Bytes of the distinct physical pages the processes map (``/proc/<pid>/pagemap``, needs root): their total PSS
    on a quiet machine (on a shared one, PSS also splits library pages with other users' processes)."""
    import numpy as np

    found = []
    for pid in pids:
        ranges, current = [], None
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(" ", 1)[0]
                if "-" in head and not head.endswith(":"):
                    current = tuple(int(x, 16) for x in head.split("-"))
                elif line.startswith("Rss:") and current is not None and int(line.split()[1]) > 0:
                    ranges.append(current)
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for start, end in ranges:
                pagemap.seek(start // 4096 * 8)
                entries = np.frombuffer(pagemap.read((end - start) // 4096 * 8), dtype=np.uint64)
                pfn = entries & np.uint64((1 << 55) - 1)
                found.append(pfn[((entries >> np.uint64(63)) == 1) & (pfn != 0)])
    return len(np.unique(np.concatenate(found))) * 4096 if found else 0


def measure_case(args: dict[str, Any]) -> dict[str, Any]:
    """One COCO case in this (fresh) process: ``seconds``, peak RSS above the import baseline; for ``pss`` the memory
    of the process and its workers after ``batches`` batches with 0 workers, then with 2."""
    import contextlib
    import io
    import multiprocessing

    import torch

    from attnlab.data.coco import CocoDataModule

    if args["case"] == "pycocotools":
        from pycocotools.coco import COCO
    base, start, out = memory("VmRSS"), time.perf_counter(), {}
    kwargs = {"splits": _SPLITS, "cache_dir": args["cache"], "batch_size": 16, "persistent_workers": True}
    dm = None if args["case"] == "pycocotools" else CocoDataModule(root=args["root"], num_workers=0, **kwargs)
    if args["case"] == "pycocotools":
        with contextlib.redirect_stdout(io.StringIO()):
            COCO(str(Path(args["root"]) / "annotations" / "instances_train.json"))
    else:
        torch.manual_seed(0)
        dm.setup("fit")
        for workers in (0, 2) if args["case"] == "pss" else ():
            dm.num_workers, loader = workers, iter(dm.train_dataloader())
            for _ in range(args["batches"]):
                next(loader)
            pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children() if p.pid is not None)]
            pss = {"pss": _rollup(pids, "Pss"), "pss_anon": _rollup(pids, "Pss_Anon"), "footprint": _footprint(pids)}
            out[f"workers_{workers}"] = pss | {"processes": len(pids)}
            del loader
    return out | {"seconds": time.perf_counter() - start, "peak_above_base": memory("VmHWM") - base}


def _setup_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, repeats: int) -> None:
    def measure(name: str, r: int) -> dict[str, Any]:  # a fresh cache for every repeat's first setup
        cache = str(settings.scratch(f"coco_cache_{r}"))
        args = {"case": "pycocotools" if name == "coco" else "setup", "root": str(root), "cache": cache}
        return run_child("benchmarks.data:measure_case", args, 1800)

    runs = interleave(repeats, ("coco", "first", "warm"), measure)
    t, m = ({name: [c[key] for c in cases] for name, cases in runs.items()} for key in ("seconds", "peak_above_base"))
    names = ("attnlab first setup (parse + index + image checks): time", "pycocotools COCO(train.json): time")
    time_ratio = compare(sec, (*names, "first setup time / pycocotools time (per repeat)"), t["first"], t["coco"], "s")
    rss = "peak RSS above imports"
    names = (f"attnlab first setup: {rss}", f"pycocotools COCO(): {rss}", "first setup peak RSS / pycocotools peak RSS")
    rss_ratio = compare(sec, names, m["first"], m["coco"], "bytes")
    sec["figures"] += [
        figure("attnlab warm setup (a new process, cached index): time", t["warm"], "s"),
        figure(f"attnlab warm setup: {rss}", m["warm"], "bytes"),
    ]
    sec["targets"] += [
        target("COCO first setup time vs pycocotools COCO()", "<=", 1.0, time_ratio, "x"),
        target("COCO first setup peak RSS vs pycocotools COCO()", "<=", 0.5, rss_ratio, "x"),
        target("COCO warm setup", "<=", 5.0, statistics.median(t["warm"]), "s"),
    ]


def _pss_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, batches: int) -> None:
    args = {"case": "pss", "root": str(root), "cache": str(settings.scratch("coco_cache_0")), "batches": batches}
    run = run_child("benchmarks.data:measure_case", args, 1800)
    zero, two = run["workers_0"], run["workers_2"]
    kinds = {
        "footprint": "distinct pages, i.e. total PSS on a quiet machine",
        "pss": "total PSS",
        "pss_anon": "PSS of anonymous memory",
    }
    for key, what in kinds.items():
        head = f"{what} after {batches} batches"
        names = (
            f"{head}, 2 workers ({two['processes']} processes)",
            f"{head}, 0 workers",
            f"{what}: 2 workers / 0 workers",
        )
        compare(sec, names, [two[key]], [zero[key]], "bytes")
    name = f"COCO memory after {batches} batches, 2 workers vs 0 (distinct pages)"
    sec["targets"].append(target(name, "<=", 1.10, two["footprint"] / zero["footprint"], "x"))


def _coco_steps_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Default detection config, steps/s with 0 and 2 DataLoader workers (interleaved)."""
    steps, warmup, repeats = settings.pick((40, 8, 3), (25, 5, 2), (6, 2, 1))

    def rate(workers: str, _: int) -> float:
        job = job_for(settings, "detection", "steps", [f"++data.num_workers={workers}"])
        return run_lightning(job, steps, warmup).steps_per_second

    rates = interleave(repeats, ("0", "2"), rate)
    names = [f"detection training steps/s, default config, {w} workers" for w in (2, 0)]
    compare(sec, [*names, "steps/s with 2 workers / 0 workers"], rates["2"], rates["0"], "steps/s")


@timed("data", TITLE)
def run(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """The translation token store, then the COCO index on a generated COCO-2017-sized set."""
    add_translation_figures(settings, sec)
    scale = settings.pick(1.0, 0.1, 2000 / COCO2017_TRAIN["images"])
    root = settings.workdir / "coco_sized"
    counts = write_coco_sized(root, int(COCO2017_TRAIN["images"] * scale), int(COCO2017_TRAIN["annotations"] * scale))
    sec["details"]["coco_sized"] = counts
    _setup_figures(settings, sec, root, settings.pick(2, 2, 1))
    _pss_figures(settings, sec, root, settings.pick(200, 200, 20))
    _coco_steps_figures(settings, sec)
