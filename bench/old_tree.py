"""An earlier commit's package beside this tree's, for same-process before/after benches."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def import_old(tree: Path):
    """The package of the checkout at ``tree`` (e.g. a git worktree), imported as ``nst_old``."""
    spec = importlib.util.spec_from_file_location("nst_old", tree / "nst_jax" / "__init__.py",
                                                  submodule_search_locations=[str(tree / "nst_jax")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["nst_old"] = module
    spec.loader.exec_module(module)
    return module
