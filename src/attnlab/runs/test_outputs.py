"""Each run's test-split outputs, kept next to ``metrics.json``, so a run can be scored again and
compared for significance without its model.

Layout (``<run>/test_outputs/``)::

    outputs.json      what the folder holds: task, split, count and how to score it (below)
    hypotheses.txt    translation: one detokenised hypothesis per line, in the order of
    references.txt    translation: ...the references (the test split's own order), one per line
    detections.json   detection: COCO results [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]
                      in original-image pixels and the data set's own image and category ids

``outputs.json`` also records, for translation, the sacreBLEU tokenizer BLEU was computed with and
whether the lines are in reference order; for detection, the annotation file scored against, the
image ids that were evaluated (all images of the split unless a run looked at some batches on
purpose) and the category ids of the model's label space (categories no training annotation
uses are not scored). Sizes: about the size of the test text twice for translation; about 90
bytes per detection (COCO val2017, 5k images at 30 detections each: ~14 MB).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OUTPUTS_DIR", "DetectionOutputs", "TranslationOutputs", "read_test_outputs", "write_test_outputs"]

OUTPUTS_DIR = "test_outputs"
INFO_FILE = "outputs.json"
_FILES = {"translation": ("hypotheses.txt", "references.txt"), "detection": ("detections.json",)}


@dataclass
class TranslationOutputs:
    """A translation run's test hypotheses and references, line i of one translating line i of the other."""

    hypotheses: list[str]
    references: list[str]
    bleu_tokenize: str = "13a"
    order: str = "reference"


@dataclass
class DetectionOutputs:
    """A detection run's test detections (COCO results, data set ids) and what they are scored against."""

    detections: list[dict[str, Any]]
    annotation_file: str
    image_ids: list[Any]
    category_ids: list[Any] = field(default_factory=list)
    all_images: bool = True


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _compact(value: float, digits: int | None) -> float:
    """A float written short: rounded to ``digits`` decimals, or (None) to the shortest decimal that
    still reads back as the same float32 (what the model produced), which keeps every score order."""
    import numpy as np

    return round(float(value), digits) if digits is not None else float(str(np.float32(value)))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_test_outputs(directory: str | Path, outputs: Mapping[str, Any]) -> Path:
    """Write a task's ``test_outputs()`` dict (``task`` = ``translation`` or ``detection``) into
    ``directory`` (normally ``<run>/test_outputs``); returns the ``outputs.json`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    task = outputs["task"]
    info: dict[str, Any] = {"task": task, "split": "test", "files": list(_FILES[task])}
    if task == "translation":
        hyps, refs = list(outputs["hypotheses"]), list(outputs["references"])
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
        for name, lines in zip(_FILES[task], (hyps, refs)):
            _write_text(directory / name, "".join(_one_line(x) + "\n" for x in lines))
        info.update(
            count=len(hyps), bleu_tokenize=outputs.get("bleu_tokenize", "13a"), order=outputs.get("order", "reference")
        )
    elif task == "detection":
        detections = [
            {
                "image_id": d["image_id"],
                "category_id": d["category_id"],
                "bbox": [_compact(v, 3) for v in d["bbox"]],
                "score": _compact(d["score"], None),
            }
            for d in outputs["detections"]
        ]
        _write_text(directory / "detections.json", json.dumps(detections, separators=(",", ":")))
        info.update(
            count=len(detections),
            annotation_file=str(outputs["annotation_file"]),
            image_ids=list(outputs["image_ids"]),
            category_ids=list(outputs.get("category_ids") or []),
            all_images=bool(outputs.get("all_images", True)),
        )
    else:
        raise ValueError(f"unknown task {task!r} for test outputs (translation or detection)")
    _write_text(directory / INFO_FILE, json.dumps(info, indent=1))
    return directory / INFO_FILE


def read_test_outputs(run_dir: str | Path) -> TranslationOutputs | DetectionOutputs | None:
    """The test outputs of the run in ``run_dir`` (the folder holding ``metrics.json``), or None
    when it kept none (a failed run, ``test=false``, or a run from before they were kept)."""
    directory = Path(run_dir) / OUTPUTS_DIR
    info_path = directory / INFO_FILE
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    if info["task"] == "translation":
        hyps, refs = (_read_lines(directory / name, info["count"]) for name in _FILES["translation"])
        return TranslationOutputs(
            hyps, refs, bleu_tokenize=info.get("bleu_tokenize", "13a"), order=info.get("order", "reference")
        )
    if info["task"] == "detection":
        detections = json.loads((directory / "detections.json").read_text())
        return DetectionOutputs(
            detections,
            info["annotation_file"],
            list(info["image_ids"]),
            list(info.get("category_ids") or []),
            bool(info.get("all_images", True)),
        )
    raise ValueError(f"{info_path}: unknown task {info['task']!r}")


def _read_lines(path: Path, count: int) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if len(lines) < count:
        raise ValueError(f"{path} has {len(lines)} lines, {count} expected (see outputs.json)")
    return lines[:count]
