"""``xbn-train`` with the tiny stand-in model whatever ``--model`` says.

The subprocess tests of the loop's mechanics (kill -9 and resume, two
workers) run this instead of ``python -m xbn.cli.train``: the mechanics do
not depend on the network, and tracing MobileNetV2 in every process costs
minutes of the suite.  The real model is trained end to end by the main-job
test.
"""

import sys

import xbn.models
from tiny import tiny_model

xbn.models.get_model = lambda name, **kwargs: tiny_model(name, **kwargs)

if __name__ == "__main__":
    from xbn.cli.train import main

    sys.exit(main())
