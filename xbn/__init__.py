"""xbn: a Keras 3 model zoo about normalization in convolutional networks.

The package is organised one folder per concern; data flows one way
(docs/ARCHITECTURE.md):

- :mod:`xbn.layers`: ``BatchNorm``, ``GroupNorm``, ``WSConv2D``, ``Conv2D`` and the norm
  table the model builders use.
- :mod:`xbn.models`: the zoo (ResNet, ResNeXt, the CIFAR ResNets, MobileNetV2,
  ShuffleNetV2; vanilla, XBN and GN+WS), its registry, trained weights by
  name and weight transfer.
- :mod:`xbn.surgery`: XBN from any trained BatchNorm network.
- :mod:`xbn.data`, :mod:`xbn.training`, :mod:`xbn.export`, :mod:`xbn.diagnostics`:
  the tf.data sources, ``xbn-train``, SavedModel exports, estimation shift and precise BN.

``import xbn`` loads keras with its backend first, then TensorFlow only
where it is used (:mod:`xbn._backend` says why the order matters), and
registers xbn's keras classes, so that ``keras.saving.load_model`` opens a
saved xbn model after ``import xbn`` (or any ``xbn`` module).
"""

__version__ = "0.1.0"

from xbn import _backend

_backend.load()

# The modules that register xbn's keras classes (layers, folded BatchNorm,
# the zoo's model and layer classes).
import xbn.fold  # noqa: E402,F401
import xbn.layers  # noqa: E402,F401
import xbn.models  # noqa: E402,F401

__all__ = ["__version__"]
