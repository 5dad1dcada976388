"""`python -m bench [--quick] [--json FILE] [--reps N] [--plot FILE.png]` (as root).

See bench/run.py."""

import sys

from bench.run import main

sys.exit(main(sys.argv[1:]))
