"""Data for training and evaluation: the ``--data`` sources and tf.data pipelines.

- :func:`load_source` opens ``digits``, ``folder:PATH``, ``tfrecord:GLOB``,
  ``tfds:NAME`` or ``synthetic`` (see :mod:`xbn.data.sources`).
- :class:`Pipeline` turns a source into augmented training batches and
  center-cropped evaluation batches for a model (see :mod:`xbn.data.pipeline`).
"""

from xbn.data.images import BadImageError
from xbn.data.pipeline import Augment, Pipeline
from xbn.data.sources import DataSource, Split, load_source, parse_spec

__all__ = ["Augment", "BadImageError", "DataSource", "Pipeline", "Split", "load_source", "parse_spec"]
