"""``xbn-train`` with the tiny test family registered (``--model tiny_xbn``).

The subprocess tests of the loop's mechanics (kill -9 and resume, two
workers) run this instead of ``python -m xbn.cli.train``: the mechanics do
not depend on the network, and tracing MobileNetV2 in every process costs
minutes of the suite.  The tiny models are registered through xbn's public
registry, as a plugin would register its own; nothing is patched.
"""

import sys

import tiny

tiny.register()

if __name__ == "__main__":
    from xbn.cli.train import main

    sys.exit(main())
