"""Benchmark results as JSON and as a Markdown table: figures (median of repeats, with unit) and targets.

Structures are plain dicts so the JSON is the data itself::

    figure  {"name", "value" (the median), "unit", "n", "min", "max", "samples", "note"}
    target  {"name", "op", "threshold", "value", "unit", "met" (bool, or None when not measured), "note"}
    section {"key", "title", "figures": [...], "targets": [...], "notes": [...], "details": {...},
             "seconds", "error" (None or the exception text)}
    report  {"schema", "created", "mode", "argv", "machine", "sections": {key: section}, "seconds"}
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "figure",
    "format_value",
    "section",
    "target",
    "to_markdown",
    "write_json",
]

SCHEMA = "attnlab-bench/1"

# Comparison operators a target may use, and how they read in the table.
_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t}


def figure(name: str, samples: float | Iterable[float], unit: str, note: str | None = None) -> dict[str, Any]:
    """A measured figure: the median of ``samples`` (one value or several repeats) and its unit."""
    values = [float(samples)] if isinstance(samples, (int, float)) else [float(s) for s in samples]
    if not values:
        raise ValueError(f"figure {name!r} has no samples")
    return {
        "name": name,
        "value": statistics.median(values),
        "unit": unit,
        "n": len(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
        "note": note,
    }


def target(
    name: str, op: str, threshold: float, value: float | None, unit: str, note: str | None = None
) -> dict[str, Any]:
    """A target (``value op threshold``) and whether the measured ``value`` meets it (None: not measured)."""
    if op not in _OPS:
        raise ValueError(f"target op must be one of {sorted(_OPS)}, got {op!r}")
    met = None
    if value is not None and math.isfinite(value):
        met = bool(_OPS[op](float(value), float(threshold)))
    return {"name": name, "op": op, "threshold": float(threshold), "value": value, "unit": unit, "met": met,
            "note": note}


def section(key: str, title: str) -> dict[str, Any]:
    """An empty section result to fill in."""
    return {"key": key, "title": title, "figures": [], "targets": [], "notes": [], "details": {},
            "seconds": None, "error": None}


def format_value(value: float | None, unit: str = "") -> str:
    """A compact human form: 3 significant digits, binary prefixes for bytes, SI for FLOP/s and rates."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    v = float(value)
    if unit == "bytes":
        for prefix, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {prefix}"
        return f"{v:.0f} B"
    if unit.startswith("FLOP"):
        for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {prefix}{unit}"
    if unit == "x":
        return f"{v:.3g}x"
    text = f"{v:.3e}" if abs(v) >= 1e5 else f"{v:.3g}"
    return f"{text} {unit}" if unit and unit != "ratio" else text


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _spread(fig: Mapping[str, Any]) -> str:
    if fig["n"] <= 1:
        return "1"
    unit = fig["unit"]
    return f"{fig['n']} ({format_value(fig['min'], unit)} .. {format_value(fig['max'], unit)})"


def _met(t: Mapping[str, Any]) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[t["met"]]


def to_markdown(report: Mapping[str, Any]) -> str:
    """The whole report as Markdown: machine, a targets summary, then one table per section."""
    m = report.get("machine", {})
    lines = [
        f"## attnlab benchmark ({report.get('mode', '?')} mode)",
        "",
        f"Machine: {m.get('device_name', m.get('device', '?'))}; {m.get('cores', '?')} cores "
        f"({m.get('usable_cores', '?')} usable, {m.get('torch_threads', '?')} torch threads), "
        f"{m.get('cpu_model', '?')}; torch {m.get('torch', '?')}, pytorch-lightning {m.get('lightning', '?')}, "
        f"Python {m.get('python', '?')}; load average at start {m.get('load_average', '?')}. "
        f"Values are medians of the repeats shown (n).",
        "",
    ]
    for warning in report.get("warnings", []):
        lines += [f"**Warning:** {warning}", ""]
    sections = list(report.get("sections", {}).values())
    all_targets = [(s, t) for s in sections for t in s.get("targets", [])]
    if all_targets:
        lines += ["### Targets", "", "| Section | Target | Measured | Status |", "|---|---|---|---|"]
        for s, t in all_targets:
            wanted = f"{t['op']} {format_value(t['threshold'], t['unit'])}"
            lines.append(
                f"| {_cell(s['title'])} | {_cell(t['name'])} {_cell(wanted)} | "
                f"{_cell(format_value(t['value'], t['unit']))} | {_met(t)} |"
            )
        lines.append("")
    for s in sections:
        took = f" ({s['seconds']:.0f} s)" if s.get("seconds") is not None else ""
        lines += [f"### {s['title']}{took}", ""]
        if s.get("error"):
            lines += [f"**Section failed:** `{_cell(s['error'])}`", ""]
        if s.get("figures"):
            lines += ["| Figure | Median | n (min .. max) |", "|---|---|---|"]
            for f in s["figures"]:
                name = f["name"] + (f" ({f['note']})" if f.get("note") else "")
                lines.append(f"| {_cell(name)} | {_cell(format_value(f['value'], f['unit']))} | {_cell(_spread(f))} |")
            lines.append("")
        for note in s.get("notes", []):
            lines.append(f"- {note}")
        if s.get("notes"):
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _jsonable(obj: Any) -> Any:
    """Non-finite floats -> None (JSON has no NaN), paths -> str, tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    """Write the report as indented JSON (strict: no NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    return path

