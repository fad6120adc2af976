"""``python -m gateway``: same as the ``chisan`` command."""

from gateway.cli import main

main()
