"""``python scripts/translate.py``: translate sentences with a trained translation checkpoint.

    python scripts/translate.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt "the dog sleeps ."
    echo "the dog sleeps ." | python scripts/translate.py ckpt_path=PATH beam_size=1
    python scripts/translate.py --ckpt_path PATH --beam_size 5 "a sentence" "another one"

Options (``key=value`` like Hydra, or ``--key value``):
    ckpt_path      the Lightning checkpoint of a TranslationTask (required)
    beam_size      beam width (default: the checkpoint's test beam; 1 = greedy)
    length_penalty override the checkpoint's length penalty alpha
    batch_size     sentences decoded together (default 64)
    device         cpu (default), cuda, mps ...

Sentences come from the positional arguments, or one per line on stdin when there are none.
Prints one translation per line, in input order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OPTIONS = ("ckpt_path", "beam_size", "length_penalty", "batch_size", "device")


def _hydra_style_to_flags(argv: list[str]) -> list[str]:
    """Rewrite ``key=value`` for known keys to ``--key value`` (anything else stays a sentence)."""
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if sep and key in OPTIONS:
            out += [f"--{key}", value]
        else:
            out.append(arg)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Translate sentences with a TranslationTask checkpoint.",
        epilog="Options also work Hydra-style: ckpt_path=PATH beam_size=5.",
    )
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint (.ckpt) of a translation run")
    parser.add_argument("--beam_size", type=int, default=None, help="beam width, 1 = greedy (default: checkpoint's)")
    parser.add_argument("--length_penalty", type=float, default=None, help="length penalty alpha")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("sentences", nargs="*", help="source sentences (default: read stdin, one per line)")
    return parser.parse_args(_hydra_style_to_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Translate the sentences ``argv`` names (or stdin's); return the exit status (2: unusable input)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ckpt = Path(args.ckpt_path).expanduser()
    if not ckpt.is_file():
        print(f"error: checkpoint not found: {ckpt} (pass ckpt_path=<run>/checkpoints/<name>.ckpt)", file=sys.stderr)
        return 2
    if args.beam_size is not None and args.beam_size < 1:
        print(f"error: beam_size must be >= 1, got {args.beam_size}", file=sys.stderr)
        return 2
    sentences = args.sentences or [line.strip() for line in sys.stdin]
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        print("error: no sentences given (pass them as arguments or on stdin)", file=sys.stderr)
        return 2

    # Heavy imports only once the arguments are known to be usable.
    from attnlab.errors import AttnlabError
    from attnlab.runs.checkpoint_io import load_checkpoint
    from attnlab.tasks.translation import TranslationTask

    try:
        # weights_only=True: a checkpoint is data; a file holding pickled objects is refused, unrun.
        load_checkpoint(ckpt)
        task = TranslationTask.load_from_checkpoint(str(ckpt), map_location=args.device, weights_only=True)
    except AttnlabError as exc:
        print(f"error: cannot load {ckpt}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a stack trace
        print(f"error: cannot load {ckpt} as a translation checkpoint: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.length_penalty is not None:
        task.hparams["length_penalty"] = args.length_penalty
    for line in task.translate(sentences, beam_size=args.beam_size, batch_size=args.batch_size):
        print(line)
    return 0
