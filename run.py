"""``python run.py ...`` is the same command as ``vidgraph ...``."""

from pipeline.app.cli import console

if __name__ == "__main__":
    console()
