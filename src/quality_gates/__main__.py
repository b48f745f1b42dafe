"""`python -m quality_gates` runs the CLI."""

from quality_gates.cli.app import main

main()
