"""``python -m redrelay`` runs the CLI."""

from .cli import main

main()
