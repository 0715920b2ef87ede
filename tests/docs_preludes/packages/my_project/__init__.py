"""A stand-in for the user project docs/cli.md generates code into (importable by its samples)."""
