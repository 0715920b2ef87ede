"""Run the `cadence` command line: `python -m cadence ...`."""

from __future__ import annotations

from cadence.cli import main

if __name__ == "__main__":
    main()
