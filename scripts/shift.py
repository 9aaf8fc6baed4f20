#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-shift` console script."""

import sys

from xbn.cli.shift import main

if __name__ == "__main__":
    sys.exit(main())
