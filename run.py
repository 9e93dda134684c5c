"""``python run.py ...`` is the same command as ``vidgraph ...``."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
