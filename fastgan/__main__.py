"""``python -m fastgan``: the same as the ``fastgan`` command."""
from .cli import main

raise SystemExit(main())
