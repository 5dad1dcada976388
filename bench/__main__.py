"""`python -m bench [--quick] [--json FILE] [--reps N]` (as root); see bench/run.py."""

import sys

from bench.run import main

sys.exit(main(sys.argv[1:]))
