"""The `quality-gates` command line: one module per command family."""
