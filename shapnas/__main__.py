"""``python -m shapnas``: the command-line interface."""

from shapnas.cli import main

raise SystemExit(main())
