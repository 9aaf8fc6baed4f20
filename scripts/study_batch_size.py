#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-study` console script."""

import sys

from xbn.cli.study import main

if __name__ == "__main__":
    sys.exit(main())
