"""Section 2: the attention block — every kind, forward + backward, time and peak memory.

Each case (kind x size) runs in its own child process so that its peak memory is its own: the
child reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` once after the imports (the baseline)
and again after the case; both are reported, and the difference is the case's peak. On Linux/CPU
the children are forked by a small server process (:class:`CaseServer`, ``--serve``) that has
imported torch and attnlab.attention but computed nothing (a forked child starts with its own
high-water mark, measured: a child of a 310 MiB parent reports ~15 MiB). Not by the benchmark
process itself: forking a process whose OpenMP thread pool has run (any earlier section)
deadlocks the child's first parallel region (measured: the child sat at 0% CPU). Elsewhere, and
always for CUDA (CUDA cannot be used after fork), a case is a fresh interpreter
(``python -m attnlab.bench.attention --case JSON``).

A step is: inputs ``query (B, Tq, D)`` and ``keys (B, Tk, D)`` (values = keys) that require
grad, ``ctx, _ = attn(query, keys, need_weights=False)``, ``ctx.backward(g)`` with a fixed random
``g``, gradients cleared. ``need_weights=False`` is the training path (multihead then uses
``scaled_dot_product_attention``; the other kinds compute their weights anyway).

Also: the chunked (default) additive attention against the naive one (``chunk_size >= Tq``: one
``(B, Tq, Tk, H)`` tile), the naive one only where ``B*Tq*Tk*H*4 bytes*4`` fits in 8 GiB; and
``multihead`` against ``torch.nn.MultiheadAttention`` with the same sizes and heads, interleaved
in one child process (a, b, a, b ...) for a per-repeat time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from attnlab.bench.report import figure, section, target
from attnlab.bench.settings import BenchSettings

__all__ = ["TITLE", "NAIVE_LIMIT_BYTES", "TARGET_ADDITIVE_PEAK_BYTES", "CaseServer", "cases_for", "run", "run_case",
           "run_isolated"]

TITLE = "2. Attention block (forward + backward)"
#: Naive additive attention runs only where its estimated footprint stays under this.
NAIVE_LIMIT_BYTES = 8 * 2**30
#: Target: chunked additive attention at 4096 x 4096 peaks below this (RSS over the baseline).
TARGET_ADDITIVE_PEAK_BYTES = 2 * 2**30
#: Options of every kind in this benchmark (the factory's defaults, spelled out).
HIDDEN_DIM = 128
NUM_HEADS = 4


def _maxrss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


def naive_bytes(b: int, tq: int, tk: int, hidden: int = HIDDEN_DIM) -> int:
    """Estimated footprint of naive additive attention: the (B, Tq, Tk, H) float32 energy, ~4 copies
    alive across forward and backward (sum, tanh output, its gradient, the backward's temporaries)."""
    return b * tq * tk * hidden * 4 * 4


def cases_for(settings: BenchSettings) -> tuple[list[dict[str, Any]], list[str]]:
    """The cases of this mode, and notes on what was skipped or shrunk."""
    from attnlab.attention import ATTENTION_KINDS

    sizes = settings.pick(
        full=[(64, 30, 30, 256), (2, 1024, 1024, 256), (1, 4096, 4096, 128)],
        quick=[(64, 30, 30, 256), (2, 1024, 1024, 256), (1, 4096, 4096, 128)],
        tiny=[(4, 6, 6, 16), (1, 64, 64, 16)],
    )
    notes: list[str] = []
    # The floor: what any first forward+backward costs a fresh process (libraries, autograd threads).
    cases: list[dict[str, Any]] = [{"name": "floor (dot, trivial size)", "impl": "attnlab", "kind": "dot",
                                    "B": 1, "Tq": 2, "Tk": 2, "D": 8, "warmup": 1, "repeats": 1, "floor": True}]
    for b, tq, tk, d in sizes:
        largest = tq * tk >= 4096 * 4096
        mid = tq * tk >= 1024 * 1024
        # (warmup, repeats): fewer for bigger cases; --quick runs the slowest ones once.
        fast = settings.pick(full=(2, 10), quick=(1, 5), tiny=(1, 1)) if not mid else (
            settings.pick(full=(1, 5), quick=(1, 3), tiny=(1, 1)) if not largest else
            settings.pick(full=(1, 3), quick=(1, 2), tiny=(1, 1)))
        slow = fast if not mid else (settings.pick(full=(1, 3), quick=(1, 2), tiny=(1, 1)) if not largest else
                                     settings.pick(full=(1, 2), quick=(0, 1), tiny=(1, 1)))
        size = {"B": b, "Tq": tq, "Tk": tk, "D": d}
        for kind in ATTENTION_KINDS:
            w, r = slow if kind == "additive" else fast
            cases.append({"name": f"{kind}", "impl": "attnlab", "kind": kind, **size, "warmup": w, "repeats": r})
        need = naive_bytes(b, tq, tk)
        if need <= NAIVE_LIMIT_BYTES:
            w, r = slow
            cases.append({"name": "additive naive", "impl": "attnlab", "kind": "additive", "naive": True, **size,
                          "warmup": w, "repeats": r})
        else:
            notes.append(f"naive additive skipped at (B,Tq,Tk,D)=({b},{tq},{tk},{d}): B*Tq*Tk*H*4 bytes*4 = "
                         f"{need / 2**30:.0f} GiB > {NAIVE_LIMIT_BYTES / 2**30:.0f} GiB")
        w, r = fast
        cases.append({"name": "torch.nn.MultiheadAttention", "impl": "torch_mha", "kind": "multihead", **size,
                      "warmup": w, "repeats": r})
        cases.append({"name": "multihead vs torch.nn.MultiheadAttention (paired)", "impl": "paired_mha",
                      "kind": "multihead", **size, "warmup": w, "repeats": max(r, 3 if not settings.tiny else 1)})
    return cases, notes


# ----------------------------------------------------------------------------------------- one case
def _build(case: dict[str, Any], impl: str, device: str) -> Any:
    import torch

    from attnlab.attention import build_attention

    d = case["D"]
    if impl == "torch_mha":
        module = torch.nn.MultiheadAttention(d, NUM_HEADS, batch_first=True)
    else:
        options: dict[str, Any] = {"hidden_dim": HIDDEN_DIM, "num_heads": NUM_HEADS}
        if case.get("naive"):
            options["chunk_size"] = case["Tq"]  # one tile: the plain (B, Tq, Tk, H) computation
        module = build_attention(case["kind"], query_dim=d, key_dim=d, **options)
    return module.to(device).train()


def _step_fn(module: Any, impl: str, query: Any, keys: Any, grad: Any, device: str) -> Any:
    import contextlib

    import torch

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            if impl == "torch_mha":
                ctx, _ = module(query, keys, keys, need_weights=False)
            else:
                ctx, _ = module(query, keys, need_weights=False)
        ctx.backward(grad.to(ctx.dtype))
        query.grad = keys.grad = None
        module.zero_grad(set_to_none=True)

    return step


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in THIS process (call it in a fresh child): seconds per step and peak memory."""
    import torch

    import attnlab.attention  # noqa: F401 - loaded before the baseline is read
    from attnlab.bench.timing import synchronize, time_repeats

    device = case.get("device", "cpu")
    torch.set_num_threads(int(case.get("threads") or torch.get_num_threads()))
    baseline = _maxrss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    b, tq, tk, d = case["B"], case["Tq"], case["Tk"], case["D"]
    query = torch.randn(b, tq, d, device=device, requires_grad=True)
    keys = torch.randn(b, tk, d, device=device, requires_grad=True)
    grad = torch.randn(b, tq, d, device=device)
    out: dict[str, Any] = {"baseline_rss_bytes": baseline}
    if case["impl"] == "paired_mha":
        ours = _step_fn(_build(case, "attnlab", device), "attnlab", query, keys, grad, device)
        theirs = _step_fn(_build(case, "torch_mha", device), "torch_mha", query, keys, grad, device)
        for _ in range(case["warmup"]):
            ours()
            theirs()
        t_ours, t_theirs = [], []
        for _ in range(case["repeats"]):
            for fn, samples in ((ours, t_ours), (theirs, t_theirs)):
                synchronize(device)
                start = time.perf_counter()
                fn()
                synchronize(device)
                samples.append(time.perf_counter() - start)
        out.update(seconds=t_ours, seconds_torch=t_theirs, ratios=[a / b_ for a, b_ in zip(t_ours, t_theirs)])
    else:
        step = _step_fn(_build(case, case["impl"], device), case["impl"], query, keys, grad, device)
        out["seconds"] = time_repeats(step, case["repeats"], case["warmup"], device)
    peak = _maxrss_bytes()
    out.update(peak_rss_bytes=peak, case_peak_bytes=max(0, peak - baseline))
    if device == "cuda":
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


# ----------------------------------------------------------------------------------------- isolation
def _serve() -> int:
    """``--serve``: import torch and the attention package, then fork one child per case read from stdin.

    Protocol (one JSON object per line): the parent writes a case; this server answers
    ``{"pid": child}``, the child writes ``{"ok": ..., **result}`` and exits, then the server writes
    ``{"exit": status}``. The server itself never computes, so forking it is safe.
    """
    import torch  # noqa: F401 - the imports every child's baseline includes

    import attnlab.attention  # noqa: F401

    def say(obj: dict[str, Any]) -> None:
        os.write(1, (json.dumps(obj) + "\n").encode())

    say({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                say({"ok": True, **run_case(case)})
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                os._exit(0)
        say({"pid": pid})
        _, status = os.waitpid(pid, 0)
        say({"exit": status})
    return 0


class CaseServer:
    """A ``python -m attnlab.bench.attention --serve`` process that forks a fresh child per case.

    Children are not forked from the benchmark process itself: forking a process whose OpenMP
    thread pool has run (any earlier section) deadlocks the child's first parallel region
    (measured: such a child sat at 0% CPU until killed).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "attnlab.bench.attention", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._buffer = b""
        ready = self._read(deadline=time.monotonic() + 600)
        if not ready or not ready.get("ready"):
            self.close()
            raise RuntimeError("the attention benchmark server did not start")

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line from the server, or None at the deadline / end of output."""
        import select

        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, case: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run ``case`` in a fresh child; kill the child after ``timeout`` seconds."""
        import signal

        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(case) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        pid, result, timed_out = None, None, False
        while True:
            msg = self._read(deadline if not timed_out else time.monotonic() + 60)
            if msg is None:
                if timed_out or pid is None or self.proc.poll() is not None:
                    raise RuntimeError("the attention benchmark server stopped answering")
                os.kill(pid, signal.SIGKILL)  # the case's own child, forked for this case
                timed_out = True
                continue
            if "pid" in msg:
                pid = msg["pid"]
            elif "exit" in msg:
                break
            else:
                result = msg
        if timed_out:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
        if result is None:
            return {"ok": False, "error": f"child died (wait status {msg['exit']}), e.g. out of memory"}
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_in_subprocess(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter (``python -m attnlab.bench.attention --case JSON``)."""
    cmd = [sys.executable, "-m", "attnlab.bench.attention", "--case", json.dumps(case)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", "isolation": "subprocess"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"ok": False, "error": tail[0], "isolation": "subprocess"}
    return {**json.loads(lines[-1]), "isolation": "subprocess"}


def run_isolated(cases: Sequence[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Run every case in its own child: forked by a :class:`CaseServer` on Linux/CPU, else a fresh interpreter."""
    forkable = sys.platform.startswith("linux") and hasattr(os, "fork")
    results: list[dict[str, Any]] = []
    server: CaseServer | None = None
    try:
        for case in cases:
            if forkable and case.get("device", "cpu") == "cpu":
                if server is None or server.proc.poll() is not None:
                    server = CaseServer()
                try:
                    results.append({**server.run(case, timeout), "isolation": "fork"})
                except RuntimeError as exc:
                    results.append({"ok": False, "error": str(exc), "isolation": "fork"})
                    server.close()
                    server = None
            else:
                results.append(run_in_subprocess(case, timeout))
    finally:
        if server is not None:
            server.close()
    return results


# ----------------------------------------------------------------------------------------- section
def _size_label(case: dict[str, Any]) -> str:
    return f"({case['B']},{case['Tq']},{case['Tk']},{case['D']})"


def run(settings: BenchSettings) -> dict[str, Any]:
    """Every case in its own child; figures per case, the two targets."""
    started = time.perf_counter()
    result = section("attention", TITLE)
    cases, notes = cases_for(settings)
    timeout = settings.pick(full=900.0, quick=240.0, tiny=120.0)
    rows = []
    mha_ratios: dict[str, float] = {}
    additive_peak: float | None = None
    largest = max((c for c in cases if not c.get("floor")), key=lambda c: c["Tq"] * c["Tk"] * c["B"])
    cases = [{**case, "device": settings.device, "threads": settings.num_threads()} for case in cases]
    for case, out in zip(cases, run_isolated(cases, timeout)):
        label = f"{case['name']} {_size_label(case)}"
        rows.append({"case": case, "result": out})
        if not out.get("ok"):
            result["notes"].append(f"{label}: {out.get('error')}")
            continue
        if case["impl"] == "paired_mha":
            ratio = statistics.median(out["ratios"])
            mha_ratios[_size_label(case)] = ratio
            result["figures"].append(figure(f"multihead / nn.MultiheadAttention time {_size_label(case)}",
                                            out["ratios"], "ratio", note="paired, same process"))
            continue
        if case.get("floor"):
            result["figures"].append(figure(f"{label} peak RSS over baseline", out["case_peak_bytes"], "bytes",
                                            note="first-use cost included in every case below"))
            continue
        result["figures"].append(figure(f"{label} fwd+bwd", [s * 1e3 for s in out["seconds"]], "ms"))
        result["figures"].append(figure(f"{label} peak RSS over baseline", out["case_peak_bytes"], "bytes"))
        if case["impl"] == "attnlab" and case["kind"] == "additive" and not case.get("naive") \
                and all(case[k] == largest[k] for k in ("B", "Tq", "Tk", "D")):
            additive_peak = float(out["case_peak_bytes"])
    baselines = [r["result"]["baseline_rss_bytes"] for r in rows if r["result"].get("ok")]
    if baselines:
        result["figures"].append(figure("RSS baseline after imports (per child)", baselines, "bytes"))
    result["targets"].append(target(
        f"additive (chunked) peak at {largest['Tq']}x{largest['Tk']}", "<", TARGET_ADDITIVE_PEAK_BYTES,
        additive_peak, "bytes", note="RSS over the after-imports baseline"))
    for size, ratio in mha_ratios.items():
        result["targets"].append(target(f"multihead / nn.MultiheadAttention time {size}", "<=", 1.0, ratio, "ratio"))
    result["notes"] += notes + [
        "Step = forward with need_weights=False + backward of a fixed random gradient; values = keys; "
        f"additive hidden_dim={HIDDEN_DIM}, multihead num_heads={NUM_HEADS} (also for nn.MultiheadAttention, "
        "batch_first=True).",
        "Each case runs in its own child process; peak = ru_maxrss after the case - ru_maxrss after imports "
        "(the baseline figure). 'additive' is the default (chunked, checkpointed tiles); 'additive naive' "
        "is the same module with chunk_size = Tq (one (B,Tq,Tk,H) tile).",
    ]
    if settings.quick:
        result["notes"].append("--quick: the additive cases at 4096x4096 run once without warm-up.")
    result["details"]["cases"] = rows
    result["seconds"] = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attnlab.bench.attention --case JSON``: run one case here, print its result as JSON
    (``--serve``: the fork server of :class:`CaseServer`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="the case as JSON")
    parser.add_argument("--serve", action="store_true", help="fork a child per case read from stdin (internal)")
    args = parser.parse_args(argv)
    if args.serve:
        return _serve()
    if not args.case:
        parser.error("--case or --serve is required")
    case = json.loads(args.case)
    try:
        out = {"ok": True, **run_case(case)}
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
