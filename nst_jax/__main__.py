"""``python -m nst_jax``: the ``nst-jax`` command (console.main)."""

from .console import main

main()
