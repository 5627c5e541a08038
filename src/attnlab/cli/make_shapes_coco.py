"""Write the generated shapes detection set in COCO layout (what `data=coco` reads by default).

    python scripts/make_shapes_coco.py OUT_DIR [--n-train 2000] [--n-val 200] [--n-test 200]
        [--seed 0] [--image-size 128] [--min-object-size 16] [--max-object-size 60]
        [--max-objects 4] [--shapes circle square triangle] [--format jpg] [--overwrite]

Then train on it with `python train.py experiment=detection data.root=OUT_DIR`.
"""

from __future__ import annotations

import argparse
import sys

from attnlab.data.synthetic_shapes import SHAPES, ShapesConfig, generate_shapes_coco


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the command line); return the exit status (2: unusable input)."""
    d = ShapesConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="folder to create (must be missing or empty unless --overwrite)")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-val", type=int, default=d.n_val)
    p.add_argument("--n-test", type=int, default=d.n_test)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-size", type=int, default=d.image_size, help="square image side in pixels")
    p.add_argument("--min-object-size", type=int, default=d.min_object_size)
    p.add_argument("--max-object-size", type=int, default=d.max_object_size)
    p.add_argument("--min-objects", type=int, default=d.min_objects)
    p.add_argument("--max-objects", type=int, default=d.max_objects)
    p.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(d.shapes))
    p.add_argument("--format", dest="image_format", choices=("jpg", "png"), default=d.image_format)
    p.add_argument("--overwrite", action="store_true", help="replace a set this script wrote before")
    args = vars(p.parse_args(argv))
    out_dir, overwrite = args.pop("out_dir"), args.pop("overwrite")
    try:
        cfg = ShapesConfig.from_dict(args)
        summary = generate_shapes_coco(out_dir, cfg, overwrite=overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, counts in summary["counts"].items():
        print(f"{split:5s}: {counts['images']:6d} images, {counts['annotations']:6d} boxes")
    print(f"wrote {summary['root']} in {summary['seconds']:.1f} s")
    return 0
