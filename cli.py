"""Entry point from a checkout: ``python cli.py --help``. Installed, the same Typer app
is the ``nst-jax`` command (see ``nst_jax/cli.py``)."""

import sys

if __name__ == "__main__":
    try:
        from nst_jax.console import main
    except ImportError as e:  # a checkout without the dependencies installed
        sys.exit(f"error: nst-jax needs its dependencies ({e.name} is missing): "
                 "pip install -e .  (from this folder)")
    main()
