#!/usr/bin/env python
"""Regenerate the model table of models/README.md (parameters and FLOPs).

Usage: python scripts/model_table.py [--readme models/README.md] [MODEL ...]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="registered names (default: all)")
    parser.add_argument("--readme", default="models/README.md")
    args = parser.parse_args(argv)
    from xbn.models.summary import write_readme_table

    write_readme_table(args.readme, args.models or None)
    print(f"[model-table] wrote the 'models' section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
