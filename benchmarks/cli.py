"""``python scripts/bench.py [--quick|--tiny] [--out FILE.json] [--sections a,b] [--device cpu|cuda]``.

Runs the chosen sections in order, writes the report as JSON (``--out``) and Markdown (same name,
``.md``) and prints the Markdown. A failing section is recorded with its error and the others still
run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import SECTIONS
from benchmarks.report import SCHEMA, section, to_markdown, write_json
from benchmarks.settings import BenchSettings

log = logging.getLogger("benchmarks")


def parse_sections(text: str | None) -> list[str]:
    """``"a,b"`` -> those sections in run order; None/empty -> all. Unknown names are an error."""
    wanted = [s.strip() for s in (text or "").split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def run_sections(settings: BenchSettings, sections: Sequence[str], argv: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``sections``; return the whole report (see :mod:`benchmarks.report`)."""
    import torch

    from benchmarks.machine import machine_info, resolve_device

    resolve_device(settings.device)
    torch.set_num_threads(settings.num_threads())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": settings.mode, "argv": list(argv),
        "machine": machine_info(settings.device), "sections": {},
        "settings": {"device": settings.device, "threads": settings.num_threads(), "seed": settings.seed,
                     "sections": list(sections)},
    }
    for key in sections:
        module = importlib.import_module(f"benchmarks.{key}")
        log.info("section %s ...", key)
        t0 = time.perf_counter()
        try:
            result = module.run(settings)
        except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
            result = section(key, module.TITLE)
            result.update(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)
            result["details"]["traceback"] = traceback.format_exc()
            log.error("section %s failed: %s", key, result["error"])
        report["sections"][key] = result
        log.info("section %s done in %.0f s", key, result["seconds"] or 0.0)
    load, threads = report["machine"].get("load_average"), settings.num_threads()
    if load and threads > 1 and load[0] > 0.5 * (report["machine"].get("usable_cores") or 1):
        # Measured here: 2 threads on 2 cores with one other busy process took a detection step from
        # 0.17 s to 0.9-7 s: every parallel region waits for the descheduled thread.
        report["warnings"] = [f"load average {load[0]} at start with {threads} torch threads: other processes "
                              "compete for the cores and OpenMP barriers make figures slow and erratic; --threads 1 "
                              "gives stable ones."]
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") \
        else None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark attnlab; writes JSON + Markdown.")
    parser.add_argument("--quick", action="store_true", help="fewer steps/repeats: minutes, not an hour")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data, correctness only (tests)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON report (default logs/bench/bench_<mode>_<time>.json); Markdown beside it")
    parser.add_argument("--sections", default=None, help=f"comma-separated subset of: {','.join(SECTIONS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where every section runs (cuda: trainer=gpu, bf16)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: all usable cores; 1 on a machine others are using)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    args = parser.parse_args(argv)
    if args.quick and args.tiny:
        parser.error("--quick and --tiny are exclusive")
    try:
        sections = parse_sections(args.sections)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    extra = {"workdir": args.workdir} if args.workdir is not None else {}
    settings = BenchSettings(mode=mode, device=args.device, threads=args.threads, seed=args.seed, **extra)
    report = run_sections(settings, sections, argv)
    if args.out is None:
        from attnlab.project import project_root

        args.out = project_root() / "logs" / "bench" / f"bench_{mode}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    write_json(report, args.out)
    markdown = to_markdown(report)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"JSON: {args.out}\nMarkdown: {args.out.with_suffix('.md')}")
    return 1 if any(s.get("error") for s in report["sections"].values()) else 0
