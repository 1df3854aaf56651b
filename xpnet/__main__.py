"""``python -m xpnet``: the same commands as the installed ``xpnet``."""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
