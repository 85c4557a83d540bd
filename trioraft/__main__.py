"""`python -m trioraft`: the same command line as the `trioraft` script."""

import sys

from trioraft.ops.cli import main

sys.exit(main())
