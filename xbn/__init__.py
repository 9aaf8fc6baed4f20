"""xbn: a Keras 3 model zoo about normalization in convolutional networks.

The package is organised one folder per concern; data flows one way:

- :mod:`xbn.layers`: ``BatchNorm``, ``GroupNorm``, ``WSConv2D``, ``Conv2D`` and the norm
  table the model builders use (see docs/ARCHITECTURE.md for every layer).
- :mod:`xbn.models`: the zoo (ResNet, ResNeXt, MobileNetV2; vanilla, XBN,
  GN+WS), its registry and weight transfer.
- :mod:`xbn.bench`: ``xbn-bench``.

Importing :mod:`xbn` is cheap: the sub-packages are imported on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
