"""The ``nst-jax`` console script: signals are noted (:mod:`nst_jax.interrupt`) before
anything heavy is imported, then the Typer app in :mod:`nst_jax.cli` runs."""

import errno
import os
import sys


def main() -> None:
    from . import interrupt

    interrupt.install()
    try:
        os.getcwd()
    except FileNotFoundError:
        sys.exit("error: the current folder no longer exists: run nst-jax from another one")
    try:
        from .cli import app
    except ImportError as e:  # a checkout without the dependencies installed
        sys.exit(f"error: nst-jax needs its dependencies ({e.name} is missing): "
                 "pip install -e .  (from this folder)")
    try:
        try:
            app(prog_name="nst-jax")
        finally:
            interrupt.settle()
            sys.stdout.flush()
    except OSError as e:  # what no command turned into a message: most often the standard output itself
        what = "cannot write the command's output" if e.errno in (errno.ENOSPC, errno.EPIPE, errno.EIO) else "failed"
        sys.stderr.write(f"error: {what}: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}\n")
        sys.stderr.flush()
        os._exit(1)  # the interpreter's own flush at exit would fail again, with a traceback
