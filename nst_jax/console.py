"""The ``nst-jax`` console script: signals are noted (:mod:`nst_jax.interrupt`) before
anything heavy is imported, then the Typer app in :mod:`nst_jax.cli` runs."""

import sys


def main() -> None:
    from . import interrupt

    interrupt.install()
    try:
        from .cli import app
    except ImportError as e:  # a checkout without the dependencies installed
        sys.exit(f"error: nst-jax needs its dependencies ({e.name} is missing): "
                 "pip install -e .  (from this folder)")
    app(prog_name="nst-jax")
