from __future__ import annotations

import sys

from ta_lab2.cli import main

if __name__ == "__main__":
    sys.exit(main())
