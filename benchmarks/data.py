"""Section: data - building and opening the translation token store at full corpus sizes.

Translation (:func:`add_translation_figures`): parallel text files are generated on the fly, with
a Zipf-distributed vocabulary of made-up words so BPE has real work to do:

* Multi30k-like: sentences of about 13 words (1M pairs in full mode);
* WMT-like: sentences of about 24 words, about 27 BPE tokens (4.5M pairs in full mode);

each with 1,000 val and 1,000 test pairs, read with ``data=translation_files`` (BPE 8k, the
defaults). Every measurement runs in a fresh subprocess (``python -m benchmarks.data``) that
imports torch, Lightning and the data module, records its RSS (the import baseline), then times
``setup("fit")`` plus one pass over 50 training batches and reports its peak RSS
(``ru_maxrss``) above that baseline. The first process, on an empty cache dir, builds the store
(cold build: file digests, streaming, tokenizer training, encoding); a second process with the
same files and settings maps it (warm setup).

Training speed: steps/s of ``experiment=translation`` (the default ~22k-pair generated corpus)
through :func:`benchmarks.harness.run_lightning`, each repeat in a subprocess. With
``ATTNLAB_BENCH_BASELINE_REV=<git rev>`` the same is measured, interleaved, on that revision's
code (``git archive`` into the scratch folder) and the ratio is reported (target: within 3%).

Sizes: ``--quick`` runs 100k and 300k pairs; ``--tiny`` 2k; the full sizes (1M and 4.5M pairs)
run in full mode, e.g. ``python scripts/bench.py --sections data`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

__all__ = ["TITLE", "add_translation_figures", "run", "write_parallel_corpus"]

TITLE = "Data: token store and annotation index at full size"
MiB = 2**20
#: Issue 9 targets for the full sizes.
TARGETS = {
    "multi30k": {"cold_s": 60.0, "warm_s": 5.0, "rss": 600 * MiB},
    "wmt": {"rss": 2048 * MiB, "warm_s": 10.0},
}
STEPS_RATIO_TARGET = 0.97


# ---------------------------------------------------------------------------------------------
# Generated corpora
# ---------------------------------------------------------------------------------------------

_SIDES = {
    "src": (["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "st", "tr", "ch", "sh", "br"],
            ["a", "e", "i", "o", "u", "ea", "ou", "ai"], ["", "", "n", "r", "s", "t", "l", "nd", "ng", "ck"]),
    "tgt": (["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "z", "sch", "pf", "kr", "gl"],
            ["a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie"], ["", "", "n", "r", "s", "t", "ß", "ch", "nd"]),
}


def _vocabulary(rng: Any, side: str, size: int) -> list[str]:
    """``size`` distinct made-up words, shorter ones at the frequent (low) ranks, as in real text."""
    onsets, vowels, codas = _SIDES[side]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        syllables = 1 + min(3, int(rng.poisson(0.2 + 2.0 * len(words) / size)))
        word = "".join(
            onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] + codas[rng.integers(len(codas))]
            for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _sentences(rng: Any, vocab: list[str], probs: Any, lengths: Any) -> list[str]:
    import numpy as np

    ids = rng.choice(len(vocab), size=int(lengths.sum()), p=probs)
    words = np.asarray(vocab, dtype=object)[ids].tolist()
    ends = np.cumsum(lengths).tolist()
    out, start = [], 0
    for end in ends:
        out.append(" ".join(words[start:end]).capitalize() + " .")
        start = end
    return out


def write_parallel_corpus(folder: Path, n_train: int, mean_words: float, seed: int, n_eval: int = 1000,
                          vocab_size: int = 40000) -> dict[str, str]:
    """Generate train/val/test ``*.src``/``*.tgt`` files (one sentence a line) under ``folder``.

    Lengths are Poisson around ``mean_words`` (at least 3); the target has a length close to the
    source's. Returns the ``data.*`` overrides' values: ``{"train_src": path, ...}``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocabs = {side: _vocabulary(rng, side, vocab_size) for side in ("src", "tgt")}
    ranks = np.arange(vocab_size, dtype=np.float64)
    probs = 1.0 / (ranks + 2.7)
    probs /= probs.sum()
    paths: dict[str, str] = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        files = {side: (folder / f"{split}.{side}").open("w", encoding="utf-8") for side in ("src", "tgt")}
        try:
            for start in range(0, n, 100_000):
                m = min(100_000, n - start)
                src_len = np.maximum(3, rng.poisson(mean_words - 1, m))
                tgt_len = np.maximum(3, src_len + rng.integers(-2, 3, m))
                for side, lens in (("src", src_len), ("tgt", tgt_len)):
                    files[side].write("\n".join(_sentences(rng, vocabs[side], probs, lens - 1)) + "\n")
        finally:
            for f in files.values():
                f.close()
        paths.update({f"{split}_{side}": str(folder / f"{split}.{side}") for side in ("src", "tgt")})
    return paths


# ---------------------------------------------------------------------------------------------
# One measured set-up, in a subprocess
# ---------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less sensitive than wall time to other
    processes competing for the cores (the 2-core machine here is shared)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure_setup(args: dict[str, Any]) -> dict[str, Any]:
    """In the child: import, baseline RSS, setup + 50 training batches, peak RSS."""
    import pytorch_lightning  # noqa: F401 - part of the import baseline, as in train.py
    import torch

    from attnlab.data.content_cache import read_build_log
    from attnlab.data.token_store import corpus_cache
    from attnlab.data.translation import TranslationFilesDataModule

    torch.set_num_threads(int(args.get("threads", 1)))
    baseline = _rss_bytes()
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    dm = TranslationFilesDataModule(**args["data"])
    dm.setup("fit")
    setup_s, setup_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_started
    loader = dm.train_dataloader()
    batches = 0
    for _ in zip(range(50), loader):
        batches += 1
    first_batches_s = time.perf_counter() - started - setup_s
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    store = dm.store
    assert store is not None
    train = store.splits["train"]
    size = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    return {
        "setup_s": setup_s, "setup_cpu_s": setup_cpu_s, "first_batches_s": first_batches_s, "baseline_rss": baseline, "peak_rss": peak,
        "peak_above_baseline": peak - baseline, "n_train": len(train),
        "src_tokens_per_sentence": float(len(train.ids["src"]) / max(1, len(train))),
        "tgt_tokens_per_sentence": float(len(train.ids["tgt"]) / max(1, len(train))),
        "id_dtype": store.manifest["splits"]["train"]["src_dtype"], "store_bytes": size,
        "build_seconds": store.manifest.get("build_seconds", {}), "builds": len(read_build_log(corpus_cache(args["data"]["cache_dir"]).root)),
    }


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"})
    from attnlab.project import project_root

    # benchmarks/ is not installed: the children import it from the repository root.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root()), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def _child(kind: str, args: dict[str, Any], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m benchmarks.data setup <json>`` (or the steps script for ``steps``); the
    last stdout line is the JSON result."""
    head = ["-c", _STEPS_CODE] if kind == "steps" else ["-m", "benchmarks.data", kind]
    cmd = [sys.executable, *head, json.dumps(args)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(env))
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} subprocess exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------
# Training speed, old code vs new
# ---------------------------------------------------------------------------------------------


# Runs in a subprocess on either checkout's code (the baseline has no benchmarks.data), so it
# uses only the harness, whose API both sides share.
_STEPS_CODE = """
import json, sys
from pathlib import Path
import torch
try:
    from benchmarks.harness import prepare_job, run_lightning
except ImportError:  # a checkout from before benchmarks/ left the package
    from attnlab.bench.harness import prepare_job, run_lightning
args = json.loads(sys.argv[1])
torch.set_num_threads(int(args["threads"]))
job = prepare_job("translation", seed=int(args["seed"]), scratch=Path(args["scratch"]),
                  overrides=list(args["overrides"]))
r = run_lightning(job, int(args["steps"]), int(args["warmup"]))
print(json.dumps({"steps_per_s": r.steps_per_second, "steps_per_cpu_s": r.steps_per_cpu_second}))
"""


def _baseline_checkout(rev: str, scratch: Path) -> Path:
    """``rev``'s tracked files (``git archive``) under ``scratch``; returns that folder."""
    from attnlab.project import project_root

    dest = scratch / f"baseline_{rev.replace('/', '_')}"
    if not (dest / "src").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev], cwd=project_root(), capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _add_step_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    from benchmarks.harness import tiny_overrides
    from attnlab.project import project_root

    steps, warmup, repeats = settings.pick(full=(160, 20, 3), quick=(80, 10, 2), tiny=(4, 1, 1))
    scratch = settings.scratch("data_steps")
    overrides = tiny_overrides("translation", settings.workdir) if settings.tiny else []
    roots = {"new": project_root()}
    rev = os.environ.get("ATTNLAB_BENCH_BASELINE_REV")
    if rev:
        roots["baseline"] = _baseline_checkout(rev, scratch)
    samples: dict[str, list[float]] = {name: [] for name in roots}
    for i in range(repeats):
        for name, root in roots.items():  # interleaved, so drifting load hits both alike
            args = {"threads": settings.num_threads(), "seed": settings.seed, "steps": steps, "warmup": warmup,
                    "scratch": str(scratch / f"{name}_{i}"),
                    "overrides": [*overrides, f"paths.cache_dir={(scratch / f'cache_{name}').as_posix()}"]}
            env = {"PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)]), "PROJECT_ROOT": str(root)}
            samples[name].append(_child("steps", args, timeout=1800, env=env)["steps_per_s"])
    sec["figures"].append(figure("default translation corpus: training steps/s (this code)", samples["new"],
                                 "steps/s"))
    if rev:
        sec["figures"].append(figure(f"default translation corpus: training steps/s ({rev})", samples["baseline"],
                                     "steps/s"))
        ratios = [a / b for a, b in zip(samples["new"], samples["baseline"])]
        sec["figures"].append(figure(f"steps/s this code / {rev}", ratios, "x"))
        sec["targets"].append(target(f"training steps/s vs {rev} (default corpus)", ">=", STEPS_RATIO_TARGET,
                                     statistics.median(ratios), "x"))
    sec["notes"].append(f"Steps/s: experiment=translation, {steps} Lightning steps after {warmup} warm-up, "
                        f"{settings.num_threads()} torch threads, one subprocess per repeat"
                        + (f", interleaved with revision {rev}." if rev else
                           "; set ATTNLAB_BENCH_BASELINE_REV=<git rev> to compare with older code."))


# ---------------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------------


def _corpora(settings: BenchSettings) -> list[tuple[str, str, int, float]]:
    """(key, label, train pairs, mean words) for this mode."""
    return settings.pick(
        full=[("multi30k", "Multi30k-like", 1_000_000, 13.0), ("wmt", "WMT-like", 4_500_000, 24.0)],
        quick=[("multi30k", "Multi30k-like", 100_000, 13.0), ("wmt", "WMT-like", 300_000, 24.0)],
        tiny=[("multi30k", "Multi30k-like", 2_000, 13.0)],
    )


def add_translation_figures(settings: BenchSettings, sec: dict[str, Any]) -> None:
    """Cold build, warm setup and peak RSS per corpus size, training steps/s; the targets in full mode."""
    for key, label, n, words in _corpora(settings):
        folder = settings.scratch(f"data_{key}")
        t0 = time.perf_counter()
        paths = write_parallel_corpus(folder / "corpus", n, words, settings.seed)
        gen_s = time.perf_counter() - t0
        data = {**paths, "cache_dir": str(folder / "cache")}
        args = {"data": data, "threads": settings.num_threads()}
        timeout = settings.pick(full=3600.0, quick=900.0, tiny=300.0)
        cold = _child("setup", args, timeout)
        warm = [_child("setup", args, timeout) for _ in range(settings.pick(full=3, quick=2, tiny=1))]
        name = f"{label}, {n:,} pairs"
        sec["figures"] += [
            figure(f"{name}: generate the text files", gen_s, "s"),
            figure(f"{name}: cold build (first setup)", cold["setup_s"], "s"),
            figure(f"{name}: cold build, CPU time (all threads)", cold["setup_cpu_s"], "s"),
            figure(f"{name}: cold build, peak RSS above import baseline", cold["peak_above_baseline"], "bytes"),
            figure(f"{name}: warm setup (another process)", [w["setup_s"] for w in warm], "s"),
            figure(f"{name}: warm, peak RSS above import baseline", [w["peak_above_baseline"] for w in warm],
                   "bytes"),
            figure(f"{name}: warm process, spawn to exit", [w["process_s"] for w in warm], "s"),
            figure(f"{name}: store on disk", cold["store_bytes"], "bytes"),
            figure(f"{name}: BPE tokens per source sentence", cold["src_tokens_per_sentence"], "tokens"),
        ]
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in cold["build_seconds"].items())
        sec["notes"].append(f"{name}: build phases {steps}; ids {cold['id_dtype']}; import baseline RSS "
                            f"{cold['baseline_rss'] / MiB:.0f} MiB; builds logged {warm[-1]['builds']} (1 expected).")
        sec["details"][key] = {"cold": cold, "warm": warm, "generate_s": gen_s, "pairs": n}
        if settings.mode == "full":
            want = TARGETS[key]
            warm_s = statistics.median(w["setup_s"] for w in warm)
            if "cold_s" in want:
                sec["targets"].append(target(f"{name}: cold build", "<=", want["cold_s"], cold["setup_s"], "s"))
            sec["targets"].append(target(f"{name}: warm setup", "<=", want["warm_s"], warm_s, "s"))
            peak = max([cold["peak_above_baseline"], *(w["peak_above_baseline"] for w in warm)])
            sec["targets"].append(target(f"{name}: peak RSS above import baseline (cold and warm)", "<=",
                                         want["rss"], peak, "bytes"))
    _add_step_figures(settings, sec)
    sec["notes"].append("Set-up figures: setup('fit') + 50 training batches in a fresh subprocess "
                        "(data=translation_files defaults: BPE 8k/8k, min_frequency 2, max_len 100); peak RSS is "
                        "ru_maxrss minus the RSS after importing torch, Lightning and the data module.")


def run(settings: BenchSettings) -> dict[str, Any]:
    """Data at full size: the translation token store, then the COCO index."""
    from benchmarks.data_coco import add_coco_figures

    started = time.perf_counter()
    sec = section("data", TITLE)
    add_translation_figures(settings, sec)
    add_coco_figures(settings, sec)
    sec["seconds"] = time.perf_counter() - started
    return sec


def _main(argv: list[str]) -> int:
    kind, args = argv[0], json.loads(argv[1])
    result = {"setup": _measure_setup}[kind](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
