"""``python -m safewatch`` runs the command line."""

from safewatch.cli import main

main()
