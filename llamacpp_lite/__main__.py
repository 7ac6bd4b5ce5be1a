"""`python -m llamacpp_lite`: the `llamacpp-lite` command line (see `llamacpp_lite.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
