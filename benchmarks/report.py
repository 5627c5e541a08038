"""Benchmark results as plain dicts (the JSON is the data itself) and as a Markdown table.

figure  {"name", "value" (median), "unit", "n", "min", "max", "samples", "note"}
target  {"name", "op", "threshold", "value", "unit", "met" (bool, None = not measured), "note"}
section {"key", "title", "figures", "targets", "notes", "details", "seconds", "error"}
report  {"schema", "created", "mode", "argv", "machine", "settings", "sections": {key: section}, "seconds"}
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = "attnlab-bench/1"
_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t}
_SI = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def figure(name: str, samples: float | Iterable[float], unit: str, note: str | None = None) -> dict[str, Any]:
    """A measured figure: the median of ``samples`` (one value or several repeats) and its unit."""
    values = [float(samples)] if isinstance(samples, (int, float)) else [float(s) for s in samples]
    out = {"name": name, "value": statistics.median(values), "unit": unit, "n": len(values)}
    return out | {"min": min(values), "max": max(values), "samples": values, "note": note}


def target(name: str, op: str, threshold: float, value: float | None, unit: str, note: str | None = None) -> dict:
    """``value op threshold`` and whether it holds (None when ``value`` was not measured)."""
    if op not in _OPS:
        raise ValueError(f"target op must be one of {sorted(_OPS)}, got {op!r}")
    met = bool(_OPS[op](float(value), float(threshold))) if value is not None and math.isfinite(value) else None
    out = {"name": name, "op": op, "threshold": float(threshold), "value": value, "unit": unit}
    return out | {"met": met, "note": note}


def section(key: str, title: str) -> dict[str, Any]:
    """An empty section result to fill in."""
    empty: dict[str, Any] = {"key": key, "title": title, "figures": [], "targets": [], "notes": [], "details": {}}
    return empty | {"seconds": None, "error": None}


def timed(key: str, title: str) -> Callable[[Callable[[Any, dict], None]], Callable[[Any], dict[str, Any]]]:
    """Make ``fill(settings, section)`` a section's ``run(settings)``: a new :func:`section`, filled, timed."""

    def wrap(fill: Callable[[Any, dict], None]) -> Callable[[Any], dict[str, Any]]:
        @functools.wraps(fill)
        def run(settings: Any) -> dict[str, Any]:
            started, result = time.perf_counter(), section(key, title)
            fill(settings, result)
            return result | {"seconds": time.perf_counter() - started}

        return run

    return wrap


def compare(sec: dict, names: Iterable[str], a: Any, b: Any, unit: str, ratio: str = "x", paired: bool = True) -> float:
    """Add figures ``a``, ``b`` (samples in ``unit``) and ``a / b`` (per pair, or of the medians) to ``sec``'s;
    returns the median ratio."""
    (name_a, name_b, name_ratio), a, b = names, list(a), list(b)
    ratios = [x / y for x, y in zip(a, b)] if paired else [statistics.median(a) / statistics.median(b)]
    sec["figures"] += [figure(name_a, a, unit), figure(name_b, b, unit), figure(name_ratio, ratios, ratio)]
    return statistics.median(ratios)


def format_value(value: float | None, unit: str = "") -> str:
    """3 significant digits; binary prefixes for bytes, SI for FLOP/s."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    v = float(value)
    if unit == "bytes":
        prefixes = [(p, s) for p, s in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)) if abs(v) >= s]
        return f"{v / prefixes[0][1]:.3g} {prefixes[0][0]}" if prefixes else f"{v:.0f} B"
    if unit.startswith("FLOP") and abs(v) >= 1e3:
        prefix, scale = next((p, s) for p, s in _SI if abs(v) >= s)
        return f"{v / scale:.3g} {prefix}{unit}"
    if unit == "x":
        return f"{v:.3g}x"
    text = f"{v:.3e}" if abs(v) >= 1e5 else f"{v:.3g}"
    return f"{text} {unit}" if unit and unit != "ratio" else text


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: machine, every target, then one table per section."""
    m = report.get("machine", {})
    lines = [
        f"## attnlab benchmark ({report.get('mode', '?')} mode)",
        "",
        f"Machine: {m.get('device_name', m.get('device', '?'))}; {m.get('cores', '?')} cores "
        f"({m.get('usable_cores', '?')} usable, {m.get('torch_threads', '?')} torch threads), "
        f"{m.get('cpu_model', '?')} (fast bf16: {m.get('cpu_bf16') or 'none'}); torch {m.get('torch', '?')}, "
        f"pytorch-lightning {m.get('lightning', '?')}, Python {m.get('python', '?')}; load average at start "
        f"{m.get('load_average', '?')}. Values are medians of the repeats shown (n).",
        "",
    ]
    lines += [line for w in report.get("warnings", []) for line in (f"**Warning:** {w}", "")]
    sections = list(report.get("sections", {}).values())
    if pairs := [(s, t) for s in sections for t in s.get("targets", [])]:
        lines += ["### Targets", "", "| Section | Target | Measured | Status |", "|---|---|---|---|"]
        for s, t in pairs:
            status = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
            want = f"{t['name']} {t['op']} {format_value(t['threshold'], t['unit'])}"
            lines.append(_row(s["title"], want, format_value(t["value"], t["unit"]), status))
        lines.append("")
    for s in sections:
        lines += [f"### {s['title']}" + (f" ({s['seconds']:.0f} s)" if s.get("seconds") is not None else ""), ""]
        lines += [f"**Section failed:** `{_row(s['error'])[2:-2]}`", ""] if s.get("error") else []
        if s.get("figures"):
            lines += ["| Figure | Median | n (min .. max) |", "|---|---|---|"]
            for f in s["figures"]:
                low, high = format_value(f["min"], f["unit"]), format_value(f["max"], f["unit"])
                spread = "1" if f["n"] <= 1 else f"{f['n']} ({low} .. {high})"
                name = f["name"] + (f" ({f['note']})" if f.get("note") else "")
                lines.append(_row(name, format_value(f["value"], f["unit"]), spread))
            lines.append("")
        lines += [f"- {note}" for note in s.get("notes", [])] + ([""] if s.get("notes") else [])
    return "\n".join(lines).rstrip() + "\n"


def _jsonable(obj: Any) -> Any:
    """Non-finite floats -> None (JSON has no NaN), paths -> str, tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    """The report as indented, strict JSON (no NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    return path
