"""Section 2: the attention block -- every kind, forward + backward, time and peak memory (over the child's
after-imports baseline; CUDA: ``max_memory_allocated``), each case in a fresh process; naive additive where it fits
in 8 GiB; ``multihead`` vs ``torch.nn.MultiheadAttention`` in ABBA pairs."""

from __future__ import annotations

import math
import statistics
from typing import Any

from benchmarks.machine import run_child
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "2. Attention block (forward + backward)"
NAIVE_LIMIT_BYTES, TARGET_ADDITIVE_PEAK_BYTES = 8 * 2**30, 2 * 2**30
HIDDEN_DIM, NUM_HEADS = 128, 4


def naive_bytes(b: int, tq: int, tk: int, hidden: int = HIDDEN_DIM) -> int:
    """Naive additive attention's footprint: the (B, Tq, Tk, H) float32 energy, ~4 copies alive."""
    return b * tq * tk * hidden * 4 * 4


def median_lower_bound(values: list[float]) -> float:
    """Distribution-free lower bound of a ~95% confidence interval for the median: the order
    statistic ``x_(k)`` with ``P(Binomial(n, 1/2) < k) <= 2.5%`` (the minimum when n < 6)."""
    xs, n, k = sorted(values), len(values), 0
    while k < n and sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= 0.025:
        k += 1
    return xs[max(k - 1, 0)]


def cases_for(settings: BenchSettings) -> tuple[list[dict[str, Any]], list[str]]:
    """The cases of this mode, and notes on what was skipped."""
    from attnlab.attention import ATTENTION_KINDS

    big = [(64, 30, 30, 256), (2, 1024, 1024, 256), (1, 4096, 4096, 128)]
    sizes = [(4, 6, 6, 16), (1, 64, 64, 16)] if settings.tiny else big
    # (warm-up, repeats) by size tier, for the fast kinds and for additive (slow at 4096^2).
    fast = settings.pick([(2, 10), (1, 5), (1, 3)], [(1, 5), (1, 3), (1, 2)], [(1, 1)] * 3)
    slow = settings.pick([(2, 10), (1, 3), (1, 2)], [(1, 5), (1, 2), (0, 1)], [(1, 1)] * 3)
    cases: list[dict[str, Any]] = []
    notes = []
    for b, tq, tk, d in sizes:
        tier, size = (tq * tk >= 1024**2) + (tq * tk >= 4096**2), {"B": b, "Tq": tq, "Tk": tk, "D": d}
        specs = [(kind, "attnlab", kind, (slow if kind == "additive" else fast)[tier], {}) for kind in ATTENTION_KINDS]
        if naive_bytes(b, tq, tk) <= NAIVE_LIMIT_BYTES:
            specs.append(("additive naive", "attnlab", "additive", slow[tier], {"naive": True}))
        else:
            notes.append(f"naive additive skipped at {(b, tq, tk, d)}: ~{naive_bytes(b, tq, tk) / 2**30:.0f} GiB")
        specs.append(("torch.nn.MultiheadAttention", "torch_mha", "multihead", fast[tier], {}))
        paired = (1, 2 if settings.tiny else 9)
        specs.append(("multihead vs torch.nn.MultiheadAttention (paired)", "paired_mha", "multihead", paired, {}))
        for name, impl, kind, (warmup, repeats), extra in specs:
            cases.append(
                {"name": name, "impl": impl, "kind": kind, **extra, **size, "warmup": warmup, "repeats": repeats}
            )
    return cases, notes


def _step(case: dict[str, Any], impl: str, query: Any, keys: Any, grad: Any) -> Any:
    """One forward (need_weights=False, values = keys) + backward of ``impl`` on ``case``."""
    import torch

    from attnlab.attention import build_attention

    device, mha = case.get("device", "cpu"), impl == "torch_mha"
    chunk = {"chunk_size": case["Tq"]} if case.get("naive") else {}  # one tile: the plain computation
    dims = {"query_dim": case["D"], "key_dim": case["D"], "hidden_dim": HIDDEN_DIM, "num_heads": NUM_HEADS}
    module = torch.nn.MultiheadAttention(case["D"], NUM_HEADS, batch_first=True) if mha else None
    module = (module or build_attention(case["kind"], **dims, **chunk)).to(device).train()

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            ctx, _ = module(*((query, keys, keys) if mha else (query, keys)), need_weights=False)
        ctx.backward(grad.to(ctx.dtype))
        query.grad = keys.grad = None
        module.zero_grad(set_to_none=True)

    return step


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One case in THIS process (a fresh child): seconds per step and peak memory."""
    import torch

    import attnlab.attention  # noqa: F401 - part of the import baseline
    from benchmarks.machine import interleave, memory, time_repeats

    device = case.get("device", "cpu")
    torch.set_num_threads(int(case.get("threads") or torch.get_num_threads()))
    out: dict[str, Any] = {"baseline_rss_bytes": memory("VmHWM")}
    torch.manual_seed(0)
    query, keys = (torch.randn(case["B"], case[t], case["D"], device=device, requires_grad=True) for t in ("Tq", "Tk"))
    grad = torch.randn(case["B"], case["Tq"], case["D"], device=device)
    if case["impl"] == "paired_mha":
        steps = {impl: _step(case, impl, query, keys, grad) for impl in ("attnlab", "torch_mha")}

        def once(impl: str, _: int) -> float:
            return time_repeats(steps[impl], 1, 0, device)[0]

        pairs = interleave(case["warmup"] + case["repeats"], steps, once, abba=True)
        ours, torch_mha = (pairs[impl][case["warmup"] :] for impl in steps)
        out.update(seconds=ours, seconds_torch=torch_mha, ratios=[a / c for a, c in zip(ours, torch_mha)])
    else:
        step = _step(case, case["impl"], query, keys, grad)
        out["seconds"] = time_repeats(step, case["repeats"], case["warmup"], device)
    out.update(peak_rss_bytes=memory("VmHWM"), case_peak_bytes=max(0, memory("VmHWM") - out["baseline_rss_bytes"]))
    if device == "cuda":
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def run_isolated(cases: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Each case in its own process; a case that fails, dies (e.g. out of memory) or times out is reported."""
    results = []
    for case in cases:
        try:
            results.append({"ok": True, **run_child("benchmarks.attention:run_case", case, timeout)})
        except RuntimeError as exc:
            results.append({"ok": False, "error": str(exc)})
    return results


@timed("attention", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Every case in its own child; figures per case and the targets."""
    cases, notes = cases_for(settings)
    cases = [{**c, "device": settings.device, "threads": settings.num_threads()} for c in cases]
    largest = max(cases, key=lambda c: c["B"] * c["Tq"] * c["Tk"])
    rows, additive_peak = [], None
    for case, out in zip(cases, run_isolated(cases, settings.pick(900.0, 240.0, 120.0))):
        size = f"({case['B']},{case['Tq']},{case['Tk']},{case['D']})"
        rows.append({"case": case, "result": out})
        if not out.get("ok"):
            result["notes"].append(f"{case['name']} {size}: {out.get('error')}")
        elif case["impl"] == "paired_mha":
            r, name = out["ratios"], f"multihead / nn.MultiheadAttention time {size}"
            result["figures"].append(figure(name, r, "ratio", note=f"{len(r)} ABBA pairs in one process"))
            why = f"lower ~95% bound of the median pair ratio (median {statistics.median(r):.3f})"
            result["targets"].append(target(name, "<=", 1.0, median_lower_bound(r), "ratio", note=why))
        else:
            peak = out.get("cuda_peak_bytes", out["case_peak_bytes"])
            result["figures"] += [
                figure(f"{case['name']} {size} fwd+bwd", [s * 1e3 for s in out["seconds"]], "ms"),
                figure(f"{case['name']} {size} peak memory over baseline", peak, "bytes"),
            ]
            if case["name"] == "additive" and all(case[k] == largest[k] for k in ("B", "Tq", "Tk", "D")):
                additive_peak = float(peak)
    name = f"additive (chunked) peak at {largest['Tq']}x{largest['Tk']}"
    result["targets"].insert(0, target(name, "<", TARGET_ADDITIVE_PEAK_BYTES, additive_peak, "bytes"))
    result["notes"] += notes
    result["details"]["cases"] = rows
