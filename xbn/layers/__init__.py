"""xbn's layers: exact, fast, serializable normalization building blocks.

- :class:`BatchNorm`: ``keras.layers.BatchNormalization`` with TensorFlow's
  fused kernel and a robust synchronized mode.
- :class:`GroupNorm`: ``keras.layers.GroupNormalization`` (and
  ``tfa.layers.GroupNormalization``) with a fast analytic-gradient kernel.
- :class:`WSConv2D`: ``keras.layers.Conv2D`` with weight standardization.
- :class:`Conv2D`: ``keras.layers.Conv2D`` with a faster input gradient on
  TensorFlow; xbn's models build their convolutions from it.

All of them are registered with keras under the package name ``xbn``, so models
that use them save to and load from ``.keras`` files once ``xbn.layers`` has
been imported.
"""

from xbn.layers.batch_norm import BatchNorm
from xbn.layers.conv import Conv2D
from xbn.layers.group_norm import GroupNorm
from xbn.layers.ws_conv import WSConv2D

__all__ = ["BatchNorm", "Conv2D", "GroupNorm", "WSConv2D"]
