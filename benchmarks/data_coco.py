"""The COCO half of the bench ``data`` section: a COCO-2017-sized annotation file, set up by attnlab.

:func:`add_coco_figures` fills a section with, on a set generated on the fly
(:func:`benchmarks.coco_sized.write_coco_sized`: full size 118,287 images / 830,000
annotations / ~305 MB; ``--quick`` a tenth; ``--tiny`` 2,000 images), each case in a fresh
subprocess so that time and peak RSS are its own:

* first setup (``CocoDataModule.setup("fit")`` with an empty cache: parse, index, save, check
  every image path) vs pycocotools ``COCO(train.json)``, repeats interleaved; peak RSS is
  measured above each process's RSS after its imports. Targets: no slower, peak RSS <= 0.5x.
* warm setup (a new process, same files and cache). Target: <= 5 s.
* the memory of the process and its DataLoader workers after 200 training batches with 2 workers
  vs 0 workers (total PSS, anonymous PSS, and distinct physical pages: see :func:`_footprint`).
  Target: <= 1.10x.
* training steps/s of the default detection config with 0 and 2 workers (the ``num_workers``
  default comes from these figures), repeats interleaved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.report import figure, target
from benchmarks.settings import BenchSettings

__all__ = ["add_coco_figures"]

_SPLITS = {"train": {"images": "images/train", "annotations": "annotations/instances_train.json"},
           "val": {"images": "images/val", "annotations": "annotations/instances_val.json"}, "test": None}


# ----------------------------------------------------------------------------------- child side


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes. ``VmHWM`` (peak RSS) is
    used rather than ``ru_maxrss``, which a child inherits from its parent across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _rollup(pids: list[int], field: str) -> int:
    """Sum of one ``/proc/<pid>/smaps_rollup`` field (``Pss``, ``Pss_Anon``) over ``pids``, in bytes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
    return total


def _footprint(pids: list[int]) -> int:
    """Bytes of the distinct physical pages the processes map (``/proc/<pid>/pagemap``, needs root).

    This is their total PSS as it reads on a quiet machine. On a shared one, PSS also divides a
    library page by the *other* processes mapping it (every python with torch loaded), so adding
    workers that touch the same library pages raises a job's PSS without using one more byte.
    """
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


def _memory(pids: list[int]) -> dict[str, int]:
    return {"pss": _rollup(pids, "Pss"), "pss_anon": _rollup(pids, "Pss_Anon"), "footprint": _footprint(pids),
            "processes": len(pids)}


def _datamodule(args: dict[str, Any]) -> Any:
    from attnlab.data.coco import CocoDataModule

    return CocoDataModule(root=args["root"], splits=_SPLITS, cache_dir=args["cache"], batch_size=16,
                          num_workers=args.get("workers", 0), persistent_workers=True)


def _child(args: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process; returns seconds, peak RSS above the import baseline..."""
    import contextlib
    import io
    import time

    if args["case"] == "pycocotools":
        from pycocotools.coco import COCO
    else:
        import attnlab.data.coco  # noqa: F401 - imports counted in the baseline, as for pycocotools
    base = _status("VmRSS")
    start = time.perf_counter()
    out: dict[str, Any] = {}
    if args["case"] == "pycocotools":
        with contextlib.redirect_stdout(io.StringIO()):
            COCO(str(Path(args["root"]) / _SPLITS["train"]["annotations"]))
    elif args["case"] == "setup":
        _datamodule(args).setup("fit")
    else:  # "pss": batches with 0 workers, then with 2, the memory of this process (and its workers) after each
        import multiprocessing

        import torch

        torch.manual_seed(0)
        dm = _datamodule({**args, "workers": 0})
        dm.setup("fit")
        for workers in (0, 2):
            dm.num_workers = workers
            loader = iter(dm.train_dataloader())
            for _ in range(args["batches"]):
                next(loader)
            out[f"workers_{workers}"] = _memory([os.getpid()] + [p.pid for p in multiprocessing.active_children()])
            del loader
    out["seconds"] = time.perf_counter() - start
    out["peak_above_base"] = _status("VmHWM") - base
    return out


# ----------------------------------------------------------------------------------- parent side


def _run_child(args: dict[str, Any]) -> dict[str, Any]:
    code = "import json, sys; from benchmarks.data_coco import _child; print(json.dumps(_child(json.loads(sys.argv[1]))))"
    from attnlab.project import project_root

    # benchmarks/ is not installed: the child imports it from the repository root.
    path = os.pathsep.join(p for p in (str(project_root()), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{args['case']} child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _setup_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, repeats: int) -> None:
    coco, first, warm = [], [], []
    for r in range(repeats):  # interleaved, a fresh cache for every first setup
        coco.append(_run_child({"case": "pycocotools", "root": str(root)}))
        cache = settings.scratch(f"coco_cache_{r}")
        first.append(_run_child({"case": "setup", "root": str(root), "cache": str(cache)}))
        warm.append(_run_child({"case": "setup", "root": str(root), "cache": str(cache)}))
    mib = "bytes"
    sec["figures"] += [
        figure("pycocotools COCO(train.json): time", [c["seconds"] for c in coco], "s"),
        figure("attnlab first setup (parse + index + image checks): time", [c["seconds"] for c in first], "s"),
        figure("attnlab warm setup (a new process, cached index): time", [c["seconds"] for c in warm], "s"),
        figure("pycocotools COCO(): peak RSS above imports", [c["peak_above_base"] for c in coco], mib),
        figure("attnlab first setup: peak RSS above imports", [c["peak_above_base"] for c in first], mib),
        figure("attnlab warm setup: peak RSS above imports", [c["peak_above_base"] for c in warm], mib),
    ]
    time_ratio = [f["seconds"] / c["seconds"] for f, c in zip(first, coco)]
    rss_ratio = [f["peak_above_base"] / c["peak_above_base"] for f, c in zip(first, coco)]
    sec["figures"] += [figure("first setup time / pycocotools time (per repeat)", time_ratio, "x"),
                       figure("first setup peak RSS / pycocotools peak RSS", rss_ratio, "x")]
    sec["targets"] += [
        target("COCO first setup time vs pycocotools COCO()", "<=", 1.0, median(time_ratio), "x"),
        target("COCO first setup peak RSS vs pycocotools COCO()", "<=", 0.5, median(rss_ratio), "x"),
        target("COCO warm setup", "<=", 5.0, median([c["seconds"] for c in warm]), "s"),
    ]


def _pss_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, batches: int) -> None:
    cache = settings.scratch("coco_cache_0")
    run = _run_child({"case": "pss", "root": str(root), "cache": str(cache), "batches": batches})
    zero, two = run["workers_0"], run["workers_2"]
    for key, what in (("footprint", "distinct pages, i.e. total PSS on a quiet machine"), ("pss", "total PSS"),
                      ("pss_anon", "PSS of anonymous memory")):
        sec["figures"] += [figure(f"{what} after {batches} batches, 0 workers", zero[key], "bytes"),
                           figure(f"{what} after {batches} batches, 2 workers ({two['processes']} processes)",
                                  two[key], "bytes"),
                           figure(f"{what}: 2 workers / 0 workers", two[key] / zero[key], "x")]
    sec["targets"].append(target(f"COCO memory after {batches} batches, 2 workers vs 0 (distinct pages)", "<=", 1.10,
                                 two["footprint"] / zero["footprint"], "x"))
    sec["notes"].append(
        "memory with workers: one process, 0 then 2 workers over the same train loader. 'distinct pages' counts every "
        "physical page the job maps once (/proc/<pid>/pagemap): the job's total PSS on a quiet machine. Plain total "
        "PSS on a shared machine also splits torch's library pages with other users' processes, so it grows when "
        "workers touch them; anonymous-memory PSS is immune to that and shows the copy-on-write growth alone.")


def _steps_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Default detection config, steps/s with 0 and 2 DataLoader workers (interleaved)."""
    from benchmarks.harness import prepare_job, run_lightning, tiny_overrides

    steps, warmup, repeats = settings.pick((40, 8, 3), (25, 5, 2), (6, 2, 1))
    extra = tiny_overrides("detection", settings.workdir) if settings.tiny else []
    rates: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(repeats):
        for workers in rates:
            job = prepare_job("detection", device=settings.device, seed=settings.seed, scratch=settings.scratch("steps"),
                              overrides=[*extra, f"++data.num_workers={workers}"])
            rates[workers].append(run_lightning(job, steps, warmup).steps_per_second)
    for workers, values in rates.items():
        sec["figures"].append(figure(f"detection training steps/s, default config, {workers} workers", values,
                                     "steps/s"))
    sec["figures"].append(figure("steps/s with 2 workers / 0 workers", [a / b for a, b in zip(rates[2], rates[0])],
                                 "x"))


def add_coco_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Fill ``sec`` (a :func:`benchmarks.report.section`) with the COCO figures and targets."""
    from benchmarks.coco_sized import COCO2017_TRAIN, write_coco_sized

    scale = settings.pick(1.0, 0.1, 2000 / COCO2017_TRAIN["images"])
    root = settings.workdir / "coco_sized"
    counts = write_coco_sized(root, int(COCO2017_TRAIN["images"] * scale), int(COCO2017_TRAIN["annotations"] * scale))
    sec["details"]["coco_sized"] = counts
    sec["notes"].append(
        f"generated train file: {counts['train']['images']} images, {counts['train']['annotations']} annotations, "
        f"{counts['train']['bytes'] / 2**20:.0f} MiB (polygon segmentation included); images are symlinks to 4 real "
        f"JPEGs inside the images folder. Every case runs in a fresh process; peak RSS is above its import baseline.")
    _setup_figures(settings, sec, root, settings.pick(2, 2, 1))
    _pss_figures(settings, sec, root, settings.pick(200, 200, 20))
    _steps_figures(settings, sec)
