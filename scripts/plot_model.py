#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-plot` console script."""

import sys

from xbn.cli.plot import main

if __name__ == "__main__":
    sys.exit(main())
