#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-train` console script."""

import sys

from xbn.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
