"""``python run.py ...`` is the same command as ``vidgraph ...``."""

import sys

from pipeline.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
