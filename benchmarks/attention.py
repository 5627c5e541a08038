"""Section 2: the attention block -- every kind, forward + backward, time and peak memory.

Each case runs in its own child of a ``multiprocessing`` forkserver that imported torch and
``attnlab.attention`` but computed nothing (forking a process whose OpenMP pool has run, like the
benchmark itself, deadlocks the child). The child reads ``ru_maxrss`` after the imports (the
baseline) and after the case: the difference is the case's peak (CUDA: ``max_memory_allocated``).
A step: ``attn(query, keys, need_weights=False)`` (values = keys, the training path) and backward
of a fixed gradient; bf16 autocast on CUDA. Also: naive additive (one ``(B, Tq, Tk, H)`` tile, where
its ~4 float32 copies fit in 8 GiB), and ``multihead`` vs ``torch.nn.MultiheadAttention`` in one
child, ABBA-interleaved pairs.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import statistics
import sys
import time
from typing import Any

from benchmarks.report import figure, section, target
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

    sizes = [(4, 6, 6, 16), (1, 64, 64, 16)] if settings.tiny else \
        [(64, 30, 30, 256), (2, 1024, 1024, 256), (1, 4096, 4096, 128)]
    # (warm-up, repeats) by size tier, for the fast kinds and for additive (slow at 4096^2).
    fast = {"full": [(2, 10), (1, 5), (1, 3)], "quick": [(1, 5), (1, 3), (1, 2)], "tiny": [(1, 1)] * 3}[settings.mode]
    slow = {"full": [(2, 10), (1, 3), (1, 2)], "quick": [(1, 5), (1, 2), (0, 1)], "tiny": [(1, 1)] * 3}[settings.mode]
    notes: list[str] = []
    cases: list[dict[str, Any]] = []
    for b, tq, tk, d in sizes:
        tier, size = (tq * tk >= 1024**2) + (tq * tk >= 4096**2), {"B": b, "Tq": tq, "Tk": tk, "D": d}
        for kind in ATTENTION_KINDS:
            w, r = (slow if kind == "additive" else fast)[tier]
            cases.append({"name": kind, "impl": "attnlab", "kind": kind, **size, "warmup": w, "repeats": r})
        if naive_bytes(b, tq, tk) <= NAIVE_LIMIT_BYTES:
            w, r = slow[tier]
            cases.append({"name": "additive naive", "impl": "attnlab", "kind": "additive", "naive": True, **size,
                          "warmup": w, "repeats": r})
        else:
            notes.append(f"naive additive skipped at {(b, tq, tk, d)}: ~{naive_bytes(b, tq, tk) / 2**30:.0f} GiB")
        w, r = fast[tier]
        cases += [{"name": "torch.nn.MultiheadAttention", "impl": "torch_mha", "kind": "multihead", **size,
                   "warmup": w, "repeats": r},
                  {"name": "multihead vs torch.nn.MultiheadAttention (paired)", "impl": "paired_mha",
                   "kind": "multihead", **size, "warmup": 1, "repeats": 2 if settings.tiny else 9}]
    return cases, notes


def _step(case: dict[str, Any], impl: str, query: Any, keys: Any, grad: Any) -> Any:
    import torch

    from attnlab.attention import build_attention

    device = case.get("device", "cpu")
    if impl == "torch_mha":
        module = torch.nn.MultiheadAttention(case["D"], NUM_HEADS, batch_first=True)
    else:
        chunk = {"chunk_size": case["Tq"]} if case.get("naive") else {}  # one tile: the plain computation
        module = build_attention(case["kind"], query_dim=case["D"], key_dim=case["D"], hidden_dim=HIDDEN_DIM,
                                 num_heads=NUM_HEADS, **chunk)
    module = module.to(device).train()

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            ctx, _ = module(*((query, keys, keys) if impl == "torch_mha" else (query, keys)), need_weights=False)
        ctx.backward(grad.to(ctx.dtype))
        query.grad = keys.grad = None
        module.zero_grad(set_to_none=True)

    return step


def _maxrss() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)  # macOS bytes, Linux KiB


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One case in THIS process (a fresh child): seconds per step and peak memory."""
    import torch

    from benchmarks.machine import time_repeats

    device = case.get("device", "cpu")
    torch.set_num_threads(int(case.get("threads") or torch.get_num_threads()))
    out: dict[str, Any] = {"baseline_rss_bytes": _maxrss()}
    torch.manual_seed(0)
    query, keys = (torch.randn(case["B"], t, case["D"], device=device, requires_grad=True) for t in (case["Tq"],
                                                                                                 case["Tk"]))
    grad = torch.randn(case["B"], case["Tq"], case["D"], device=device)
    if case["impl"] == "paired_mha":
        fns = [_step(case, impl, query, keys, grad) for impl in ("attnlab", "torch_mha")]
        times: list[list[float]] = [[], []]
        for i in range(case["warmup"] + case["repeats"]):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):  # ABBA: drifting load hits both alike
                seconds = time_repeats(fns[j], 1, warmup=0, device=device)[0]
                if i >= case["warmup"]:
                    times[j].append(seconds)
        out.update(seconds=times[0], seconds_torch=times[1], ratios=[a / c for a, c in zip(*times)])
    else:
        out["seconds"] = time_repeats(_step(case, case["impl"], query, keys, grad), case["repeats"],
                                      case["warmup"], device)
    out.update(peak_rss_bytes=_maxrss(), case_peak_bytes=max(0, _maxrss() - out["baseline_rss_bytes"]))
    if device == "cuda":
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def _child(case: dict[str, Any], conn: Any) -> None:
    try:
        conn.send({"ok": True, **run_case(case)})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def run_isolated(cases: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Each case in its own forkserver child; a case that fails, dies or times out is reported."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "attnlab.attention", "benchmarks.attention"])
    results = []
    for case in cases:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(case, send), daemon=True)
        proc.start()
        send.close()
        try:
            got = receive.recv() if receive.poll(timeout) else None
        except EOFError:  # the child died without answering
            got = None
        timed_out = got is None and proc.is_alive()
        if timed_out:
            proc.kill()
        proc.join()
        results.append(got or {"ok": False, "error": f"timed out after {timeout:.0f} s" if timed_out else
                               f"child died (exit code {proc.exitcode}), e.g. out of memory"})
    return results


def run(settings: BenchSettings) -> dict[str, Any]:
    """Every case in its own child; figures per case and the targets."""
    started = time.perf_counter()
    result = section("attention", TITLE)
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
            r = out["ratios"]
            result["figures"].append(figure(f"multihead / nn.MultiheadAttention time {size}", r, "ratio",
                                            note=f"{len(r)} ABBA pairs in one process"))
            result["targets"].append(target(
                f"multihead / nn.MultiheadAttention time {size}", "<=", 1.0, median_lower_bound(r), "ratio",
                note=f"lower ~95% bound of the median pair ratio (median {statistics.median(r):.3f}, "
                     f"{min(r):.3f} .. {max(r):.3f}): met unless multihead is measurably slower"))
        else:
            peak = out.get("cuda_peak_bytes", out["case_peak_bytes"])
            result["figures"] += [figure(f"{case['name']} {size} fwd+bwd", [s * 1e3 for s in out["seconds"]], "ms"),
                                  figure(f"{case['name']} {size} peak memory over baseline", peak, "bytes")]
            if case["name"] == "additive" and all(case[k] == largest[k] for k in ("B", "Tq", "Tk", "D")):
                additive_peak = float(peak)
    result["targets"].insert(0, target(f"additive (chunked) peak at {largest['Tq']}x{largest['Tk']}", "<",
                                       TARGET_ADDITIVE_PEAK_BYTES, additive_peak, "bytes"))
    result["notes"] += notes + [
        f"Step = forward (need_weights=False) + backward; values = keys; additive hidden_dim={HIDDEN_DIM}, multihead "
        f"and nn.MultiheadAttention num_heads={NUM_HEADS}. 'additive' is the default (chunked, checkpointed tiles), "
        "'additive naive' the same module with chunk_size = Tq. Peak = memory over the child's after-imports "
        "baseline (in details).",
        "multihead vs nn.MultiheadAttention: the target uses the lower confidence bound of the median pair ratio, "
        "so noise around parity (0.999 in one run, 1.04 in the next) cannot flip it.",
    ]
    result["details"]["cases"] = rows
    result["seconds"] = time.perf_counter() - started
    return result
