"""The ``nst-jax`` console script: signals are noted (:mod:`nst_jax.interrupt`) before
anything heavy is imported, then the Typer app in :mod:`nst_jax.cli` runs."""


def main() -> None:
    from . import interrupt

    interrupt.install()
    from .cli import app

    app(prog_name="nst-jax")
