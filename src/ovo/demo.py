"""``python -m ovo.demo``: see :mod:`ovo.commands.demo`."""

import sys

from ovo.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
