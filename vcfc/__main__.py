"""`python -m vcfc`: the command line, which lives on top of every layer (vcfc.runners.cli).

The one allowed upward import (tests/test_layering.py): vcfc is the codec core, and this file
only forwards to the CLI so `python -m vcfc` works like the `vcfc` console script.
"""

import sys

from vcfc.runners.cli import main

sys.exit(main())
