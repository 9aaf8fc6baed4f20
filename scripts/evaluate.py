#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-evaluate` console script."""

import sys

from xbn.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
