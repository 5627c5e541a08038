"""The commands and their wiring: ``train.py`` (:mod:`.train`, :mod:`.training`), ``eval.py`` (:mod:`.eval`),
the scripts (translate, compare, convert_checkpoint, make_shapes_coco), ``--help``, resume, the checks of a
composed config, and building a run's objects from it (:mod:`.build`, :mod:`.instantiate`).

The top of the house: it may import every other room, and none imports it. Kept light at import (no torch),
so ``--help`` and ``--cfg job`` answer quickly.
"""
