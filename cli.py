"""Entry point from a checkout: ``python cli.py --help``. Installed, the same Typer app
is the ``nst-jax`` command (see ``nst_jax/cli.py``)."""

from nst_jax.cli import app

if __name__ == "__main__":
    app(prog_name="nst-jax")
