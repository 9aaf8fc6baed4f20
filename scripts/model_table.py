#!/usr/bin/env python
"""Regenerate the model table of models/README.md (parameters and FLOPs).

Usage: python scripts/model_table.py [--readme models/README.md] [MODEL ...]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _body(argv):
    parser = argparse.ArgumentParser(prog="model_table.py", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="registered names (default: all)")
    parser.add_argument("--readme", default="models/README.md",
                        help="Markdown file whose generated 'models' section is replaced (default models/README.md)")
    args = parser.parse_args(argv)
    from xbn.cli import _common
    from xbn.models.registry import model_facts
    from xbn.models.summary import write_readme_table

    _common.check_readme(args.readme, "models")
    for name in args.models:  # the registry refuses an unknown name before anything is counted
        model_facts(name)
    write_readme_table(args.readme, args.models or None)
    print(f"[model-table] wrote the 'models' section of {args.readme}")
    return 0


def main(argv=None):
    from xbn.cli import _common

    return _common.run_main("model_table.py", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
