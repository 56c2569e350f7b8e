"""``python -m pgm_rl.cli``: the ``pgm-rl`` program."""

import sys

from pgm_rl.cli.program import main

sys.exit(main())
