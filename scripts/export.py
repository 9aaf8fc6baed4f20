#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-export` console script."""

import sys

from xbn.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
