"""The COCO half of the ``data`` section on a COCO-2017-sized set: first and warm ``CocoDataModule`` setup vs
pycocotools ``COCO()``, memory with 2 DataLoader workers vs 0, steps/s with 0 and 2 workers; each case in a fresh
process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.generated import COCO2017_TRAIN, write_coco_sized
from benchmarks.harness import job_for, run_lightning
from benchmarks.machine import interleave, memory, run_child
from benchmarks.report import figure, target
from benchmarks.settings import BenchSettings

_SPLITS = {
    "train": {"images": "images/train", "annotations": "annotations/instances_train.json"},
    "val": {"images": "images/val", "annotations": "annotations/instances_val.json"},
    "test": None,
}


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


def _datamodule(args: dict[str, Any]) -> Any:
    from attnlab.data.coco import CocoDataModule

    workers = args.get("workers", 0)
    return CocoDataModule(
        root=args["root"],
        splits=_SPLITS,
        cache_dir=args["cache"],
        batch_size=16,
        num_workers=workers,
        persistent_workers=True,
    )


def measure_case(args: dict[str, Any]) -> dict[str, Any]:
    """One case in this (fresh) process: ``seconds``, peak RSS above the import baseline, and for ``pss`` the memory
    of the process and its workers after ``batches`` batches with 0 workers, then with 2."""
    import contextlib
    import io
    import multiprocessing

    import torch

    if args["case"] == "pycocotools":
        from pycocotools.coco import COCO
    else:
        import attnlab.data.coco  # noqa: F401 - imports counted in the baseline, as for pycocotools
    base, start, out = memory("VmRSS"), time.perf_counter(), {}
    if args["case"] == "pycocotools":
        with contextlib.redirect_stdout(io.StringIO()):
            COCO(str(Path(args["root"]) / "annotations" / "instances_train.json"))
    elif args["case"] == "setup":
        _datamodule(args).setup("fit")
    else:
        torch.manual_seed(0)
        dm = _datamodule({**args, "workers": 0})
        dm.setup("fit")
        for workers in (0, 2):
            dm.num_workers = workers
            loader = iter(dm.train_dataloader())
            for _ in range(args["batches"]):
                next(loader)
            pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children() if p.pid is not None)]
            pss = {"pss": _rollup(pids, "Pss"), "pss_anon": _rollup(pids, "Pss_Anon"), "footprint": _footprint(pids)}
            out[f"workers_{workers}"] = pss | {"processes": len(pids)}
            del loader
    return out | {"seconds": time.perf_counter() - start, "peak_above_base": memory("VmHWM") - base}


def _setup_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, repeats: int) -> None:
    def measure(name: str, r: int) -> dict[str, Any]:  # a fresh cache for every repeat's first setup
        case = "pycocotools" if name == "coco" else "setup"
        args = {"case": case, "root": str(root), "cache": str(settings.scratch(f"coco_cache_{r}"))}
        return run_child("benchmarks.data_coco:measure_case", args, 1800)

    runs = interleave(repeats, ("coco", "first", "warm"), measure)
    coco, first, warm = runs["coco"], runs["first"], runs["warm"]
    rss = "peak RSS above imports"
    sec["figures"] += [
        figure("pycocotools COCO(train.json): time", [c["seconds"] for c in coco], "s"),
        figure("attnlab first setup (parse + index + image checks): time", [c["seconds"] for c in first], "s"),
        figure("attnlab warm setup (a new process, cached index): time", [c["seconds"] for c in warm], "s"),
        figure(f"pycocotools COCO(): {rss}", [c["peak_above_base"] for c in coco], "bytes"),
        figure(f"attnlab first setup: {rss}", [c["peak_above_base"] for c in first], "bytes"),
        figure(f"attnlab warm setup: {rss}", [c["peak_above_base"] for c in warm], "bytes"),
    ]
    time_ratio = [f["seconds"] / c["seconds"] for f, c in zip(first, coco)]
    rss_ratio = [f["peak_above_base"] / c["peak_above_base"] for f, c in zip(first, coco)]
    sec["figures"] += [
        figure("first setup time / pycocotools time (per repeat)", time_ratio, "x"),
        figure("first setup peak RSS / pycocotools peak RSS", rss_ratio, "x"),
    ]
    sec["targets"] += [
        target("COCO first setup time vs pycocotools COCO()", "<=", 1.0, median(time_ratio), "x"),
        target("COCO first setup peak RSS vs pycocotools COCO()", "<=", 0.5, median(rss_ratio), "x"),
        target("COCO warm setup", "<=", 5.0, median([c["seconds"] for c in warm]), "s"),
    ]


def _pss_figures(settings: BenchSettings, sec: dict[str, Any], root: Path, batches: int) -> None:
    args = {"case": "pss", "root": str(root), "cache": str(settings.scratch("coco_cache_0")), "batches": batches}
    run = run_child("benchmarks.data_coco:measure_case", args, 1800)
    zero, two = run["workers_0"], run["workers_2"]
    kinds = {
        "footprint": "distinct pages, i.e. total PSS on a quiet machine",
        "pss": "total PSS",
        "pss_anon": "PSS of anonymous memory",
    }
    for key, what in kinds.items():
        sec["figures"] += [
            figure(f"{what} after {batches} batches, 0 workers", zero[key], "bytes"),
            figure(f"{what} after {batches} batches, 2 workers ({two['processes']} processes)", two[key], "bytes"),
            figure(f"{what}: 2 workers / 0 workers", two[key] / zero[key], "x"),
        ]
    name = f"COCO memory after {batches} batches, 2 workers vs 0 (distinct pages)"
    sec["targets"].append(target(name, "<=", 1.10, two["footprint"] / zero["footprint"], "x"))
    sec["notes"].append(
        "memory with workers: one process, 0 then 2 workers over the same train loader. 'distinct pages' counts every "
        "physical page the job maps once (/proc/<pid>/pagemap): the job's total PSS on a quiet machine. Plain total "
        "PSS on a shared machine also splits torch's library pages with other users' processes, so it grows when "
        "workers touch them; anonymous-memory PSS is immune to that and shows the copy-on-write growth alone."
    )


def _steps_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Default detection config, steps/s with 0 and 2 DataLoader workers (interleaved)."""
    steps, warmup, repeats = settings.pick((40, 8, 3), (25, 5, 2), (6, 2, 1))

    def rate(workers: str, _: int) -> float:
        job = job_for(settings, "detection", "steps", [f"++data.num_workers={workers}"])
        return run_lightning(job, steps, warmup).steps_per_second

    rates = interleave(repeats, ("0", "2"), rate)
    for workers, values in rates.items():
        sec["figures"].append(
            figure(f"detection training steps/s, default config, {workers} workers", values, "steps/s")
        )
    ratios = [a / b for a, b in zip(rates["2"], rates["0"])]
    sec["figures"].append(figure("steps/s with 2 workers / 0 workers", ratios, "x"))


def add_coco_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Fill ``sec`` (a :func:`benchmarks.report.section`) with the COCO figures and targets."""
    scale = settings.pick(1.0, 0.1, 2000 / COCO2017_TRAIN["images"])
    root = settings.workdir / "coco_sized"
    counts = write_coco_sized(root, int(COCO2017_TRAIN["images"] * scale), int(COCO2017_TRAIN["annotations"] * scale))
    sec["details"]["coco_sized"] = counts
    sec["notes"].append(
        f"generated train file: {counts['train']['images']} images, {counts['train']['annotations']} annotations, "
        f"{counts['train']['bytes'] / 2**20:.0f} MiB (polygon segmentation included); images are symlinks to 4 real "
        f"JPEGs inside the images folder. Every case runs in a fresh process; peak RSS is above its import baseline."
    )
    _setup_figures(settings, sec, root, settings.pick(2, 2, 1))
    _pss_figures(settings, sec, root, settings.pick(200, 200, 20))
    _steps_figures(settings, sec)
