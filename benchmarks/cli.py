"""``scripts/bench.py``: the chosen sections in order; the report as JSON and Markdown, rewritten after every
section (a run stopped by a time limit keeps what it measured). A failing section is recorded with its error, the
others still run, and the exit status is 1."""

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
    if unknown := [s for s in wanted if s not in SECTIONS]:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def run_sections(settings: BenchSettings, sections: Sequence[str], out: Path, argv: Sequence[str] = ()) -> dict:
    """Run ``sections``, writing the report to ``out`` (+ ``.md``) as it grows."""
    import torch

    from benchmarks.machine import machine_info, resolve_device

    resolve_device(settings.device)
    torch.set_num_threads(threads := settings.num_threads())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    started, machine = time.perf_counter(), machine_info(settings.device)
    report: dict[str, Any] = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report.update(mode=settings.mode, argv=list(argv), machine=machine, sections={})
    report["settings"] = {"device": settings.device, "threads": threads, "seed": settings.seed, "sections": sections}
    if threads > 1 and (load := machine["load_average"][0]) > 0.5 * machine["usable_cores"]:
        # 2 threads on 2 cores with one other busy process: a detection step went from 0.17 s to 0.9-7 s.
        report["warnings"] = [
            f"load average {load} at start with {threads} torch threads: OpenMP barriers make "
            "figures slow and erratic; --threads 1 gives stable ones."
        ]
    for key in sections:
        module, t0 = importlib.import_module(f"benchmarks.{key}"), time.perf_counter()
        log.info("section %s ...", key)
        try:
            result = module.run(settings)
        except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
            result = section(key, module.TITLE)
            result.update(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)
            result["details"]["traceback"] = traceback.format_exc()
            log.error("section %s failed: %s", key, result["error"])
        report["sections"][key], report["seconds"] = result, time.perf_counter() - started
        machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        write_json(report, out)
        out.with_suffix(".md").write_text(to_markdown(report))
        log.info("section %s done in %.0f s", key, result["seconds"] or 0.0)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark attnlab; writes JSON + Markdown.")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats: minutes, not an hour")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data, correctness only (tests)")
    parser.add_argument("--out", type=Path, help="JSON report (default logs/bench/bench_<mode>_<time>.json)")
    parser.add_argument("--sections", help=f"comma-separated subset of: {','.join(SECTIONS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every section runs")
    parser.add_argument("--threads", type=int, help="torch threads (default: all usable cores; 1 on a busy machine)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp dir)")
    args = parser.parse_args(argv)
    if args.quick and args.tiny:
        parser.error("--quick and --tiny are exclusive")
    try:
        sections = parse_sections(args.sections)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    workdir = {"workdir": args.workdir} if args.workdir else {}
    settings = BenchSettings(mode=mode, device=args.device, threads=args.threads, seed=args.seed, **workdir)
    if args.out is None:
        from attnlab.project import project_root

        args.out = project_root() / "logs" / "bench" / f"bench_{mode}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    report = run_sections(settings, sections, args.out, argv)
    print(f"{to_markdown(report)}\nJSON: {args.out}\nMarkdown: {args.out.with_suffix('.md')}")
    return 1 if any(s.get("error") for s in report["sections"].values()) else 0
