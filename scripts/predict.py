#!/usr/bin/env python
"""Thin wrapper: the same as the `xbn-predict` console script."""

import sys

from xbn.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
