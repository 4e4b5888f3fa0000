"""The installed face of Fechatter: the `fechatter` console command and `python -m fechatter` run main.main()."""

from __future__ import annotations

import sys


def run() -> None:
    """The console script's entry point: main.main() with the process's arguments, its status the exit code."""
    from main import main  # the composition root; imported late so `import fechatter` stays cheap

    sys.exit(main())
