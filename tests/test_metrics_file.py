"""``metrics.json`` has one writer and one reader (:mod:`attnlab.runs.metrics_file`), and the places
that look for the files (the sweep summary, ``compare_runs.py``, the bench's sweep section) list them
through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.runs.metrics_file import (
    METRICS_FILE,
    find_metrics_files,
    read_metrics_file,
    sweep_metrics_files,
    write_metrics_file,
)


def test_what_is_written_reads_back_from_the_file_or_its_folder(tmp_path: Path) -> None:
    path = write_metrics_file(tmp_path / "run", {"status": "ok", "metrics": {"test/bleu": 12.5}})
    assert path == tmp_path / "run" / METRICS_FILE
    assert (
        read_metrics_file(path)
        == read_metrics_file(tmp_path / "run")
        == {"status": "ok", "metrics": {"test/bleu": 12.5}}
    )


def test_a_record_that_is_not_an_object_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_metrics_file(tmp_path)
    (tmp_path / METRICS_FILE).write_text("{broken")
    with pytest.raises(ValueError):
        read_metrics_file(tmp_path)
    with pytest.raises(OSError):
        read_metrics_file(tmp_path / "missing")


def test_a_sweep_lists_its_jobs_in_job_order_and_a_tree_shallowest_first(tmp_path: Path) -> None:
    for job in ("10", "2", "0", "1"):
        write_metrics_file(tmp_path / "sweep" / job, {"status": "ok", "job": job})
    write_metrics_file(tmp_path / "sweep" / "0" / "nested", {"status": "ok"})
    assert [p.parent.name for p in sweep_metrics_files(tmp_path / "sweep")] == ["0", "1", "2", "10"]
    found = find_metrics_files(tmp_path)
    assert len(found) == 5 and found[-1].parent.name == "nested"
