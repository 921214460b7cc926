"""Entry point from a checkout: ``python cli.py --help``. Installed, the same Typer app
is the ``nst-jax`` command (see ``nst_jax/console.py``)."""

if __name__ == "__main__":
    from nst_jax.console import main

    main()
