"""The ``nst-jax`` console script: signals are noted (:mod:`nst_jax.interrupt`) before
anything heavy is imported, then the Typer app in :mod:`nst_jax.cli` runs."""

import os
import sys


def main() -> None:
    from . import interrupt

    interrupt.install()
    try:
        from .cli import app
    except ImportError as e:  # a checkout without the dependencies installed
        sys.exit(f"error: nst-jax needs its dependencies ({e.name} is missing): "
                 "pip install -e .  (from this folder)")
    try:
        try:
            app(prog_name="nst-jax")
        finally:
            sys.stdout.flush()
    except OSError as e:  # the standard output itself failed: a full device, a closed pipe
        sys.stderr.write(f"error: cannot write the command's output: {e.strerror or e}\n")
        sys.stderr.flush()
        os._exit(1)  # the interpreter's own flush at exit would fail again, with a traceback
