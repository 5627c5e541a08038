"""Convert a checkpoint written by an older attnlab so that it loads safely (``weights_only=True``).

    python scripts/convert_checkpoint.py logs/train/runs/<run>/checkpoints/last.ckpt --trust
    python scripts/convert_checkpoint.py OLD.ckpt --trust --output NEW.ckpt
    python scripts/convert_checkpoint.py OLD.ckpt --trust --in-place     # the original kept as OLD.ckpt.pickled

Reading the old file runs whatever code it names, like any ``torch.load(weights_only=False)``: only
convert files you wrote yourself. ``--trust`` says you did. The converted file holds the same
weights and training state (it resumes and evaluates as the old one did), with the optimizer and
scheduler stored as config dicts and numpy's RNG state as a tensor.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the command line); return the exit status (2: unusable input)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--trust", action="store_true", help="I wrote this file: it may be read with weights_only=False"
    )
    parser.add_argument("--output", type=Path, default=None, help="default: <name>.safe.ckpt beside it")
    parser.add_argument(
        "--in-place", action="store_true", help="replace the file (the original kept as <name>.pickled)"
    )
    args = parser.parse_args(argv)
    source: Path = args.checkpoint
    if not source.is_file():
        print(f"error: {source} does not exist", file=sys.stderr)
        return 2
    if not args.trust:
        print(
            f"error: converting reads {source} with torch.load(weights_only=False), which runs any code the file "
            "names. Convert only checkpoints you wrote yourself, and say so with --trust.",
            file=sys.stderr,
        )
        return 2
    from attnlab.cli.checkpoint_convert import convert_file
    from attnlab.errors import AttnlabError

    target = args.output or (source if args.in_place else source.with_name(source.stem + ".safe.ckpt"))
    if args.in_place:
        backup = source.with_name(source.name + ".pickled")
        if not backup.exists():  # the original stays, under another name, until you delete it
            os.link(source, backup)
    try:
        convert_file(source, target)
    except AttnlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target}" + (f" (original kept as {source.name}.pickled)" if args.in_place else ""))
    return 0
