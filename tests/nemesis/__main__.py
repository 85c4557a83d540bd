"""`python -m nemesis` (with `tests` on the path): one fault run; see `nemesis.run`."""

from .run import main

raise SystemExit(main())
