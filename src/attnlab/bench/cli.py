"""``python scripts/bench.py [--quick] [--out FILE.json] [--sections a,b,...] [--device cpu|cuda]``.

Runs the chosen sections in order, then writes the report as JSON (``--out``) and Markdown (same
name, ``.md``) and prints the Markdown. A section that fails is recorded with its error and the
others still run; the exit status is then 1.
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

from attnlab.bench import SECTIONS
from attnlab.bench.report import SCHEMA, section, to_markdown, write_json
from attnlab.bench.settings import BenchSettings

__all__ = ["main", "parse_sections", "run_sections"]

log = logging.getLogger("attnlab.bench")


def parse_sections(text: str | None) -> list[str]:
    """``"a,b"`` -> the named sections in run order; None/empty -> all. Unknown names are an error."""
    if not text:
        return list(SECTIONS)
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def run_sections(settings: BenchSettings, sections: Sequence[str], argv: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``sections`` with ``settings``; return the whole report (see :mod:`attnlab.bench.report`)."""
    import torch

    from attnlab.bench.machine import machine_info, resolve_device

    resolve_device(settings.device)
    torch.set_num_threads(settings.num_threads())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": settings.mode,
        "argv": list(argv),
        "machine": machine_info(settings.device),
        "settings": {"device": settings.device, "threads": settings.num_threads(), "seed": settings.seed,
                     "sections": list(sections)},
        "sections": {},
    }
    for key in sections:
        module = importlib.import_module(f"attnlab.bench.{key}")
        log.info("section %s ...", key)
        t0 = time.perf_counter()
        try:
            result = module.run(settings)
        except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
            result = section(key, module.TITLE)
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["details"]["traceback"] = traceback.format_exc()
            result["seconds"] = time.perf_counter() - t0
            log.error("section %s failed: %s", key, result["error"])
        report["sections"][key] = result
        log.info("section %s done in %.0f s", key, result["seconds"] or 0.0)
    load = report["machine"].get("load_average")
    threads = settings.num_threads()
    if load and threads > 1 and load[0] > 0.5 * (report["machine"].get("usable_cores") or 1):
        # Measured here: with 2 threads on 2 cores and one other busy process, a detection step went
        # from 0.17 s (1 thread) to 0.9-7 s: each parallel region waits for the descheduled thread.
        report["warnings"] = [
            f"load average {load[0]} at start with {threads} torch threads: other processes compete for the "
            "cores and OpenMP's barrier waits make the figures slow and erratic; --threads 1 gives stable ones."]
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") \
        else None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="bench.py", description="Benchmark attnlab: overhead, attention, throughput, decoding, "
                                     "evaluation, start-up. Writes JSON + Markdown and prints the Markdown.")
    parser.add_argument("--quick", action="store_true", help="fewer steps/repeats: a few minutes on 2 cores")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data, correctness only (tests)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON report (default logs/bench/bench_<mode>_<time>.json); Markdown beside it (.md)")
    parser.add_argument("--sections", default=None, help=f"comma-separated subset of: {','.join(SECTIONS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where sections 1-4 run (cuda: bf16 autocast)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: all usable cores; use 1 on a machine others are using)")
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
    kwargs: dict[str, Any] = {"mode": mode, "device": args.device, "threads": args.threads, "seed": args.seed}
    if args.workdir is not None:
        kwargs["workdir"] = args.workdir
    settings = BenchSettings(**kwargs)
    report = run_sections(settings, sections, argv)
    out = args.out
    if out is None:
        from attnlab.project import project_root

        out = project_root() / "logs" / "bench" / f"bench_{mode}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    write_json(report, out)
    markdown = to_markdown(report)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"JSON: {out}\nMarkdown: {out.with_suffix('.md')}")
    return 1 if any(s.get("error") for s in report["sections"].values()) else 0
