"""Export for serving, and using an export.

- :func:`export_model`: a keras model as a SavedModel (or LiteRT/ONNX) with
  BatchNorm folded, verified against the model.  (Exporting a run folder,
  a ``.keras`` file or a registered model name with weights, as
  ``xbn-export`` and ``xbn-train`` do: :mod:`xbn.training.trained`.)
- :mod:`xbn.export.use`: evaluate or predict with an export, needing only
  TensorFlow (the export never needs xbn to load).
"""

from xbn.export.savedmodel import FORMATS, INFO_FILE, MAX_PIXELS, ExportError, export_model, load_info

__all__ = [
    "FORMATS", "INFO_FILE", "MAX_PIXELS", "ExportError", "export_model", "load_info",
]
