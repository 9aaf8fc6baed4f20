"""Opening a saved xbn model, and the class names that go with it.

(Run folders are :mod:`xbn.training.run_folder`'s; a SOURCE of any kind is
opened by :func:`xbn.training.trained.load_trained`.)
"""

from pathlib import Path

from xbn.errors import UsageError


def _default_names(classes):
    return [f"class_{i}" for i in range(classes)]


def read_class_names(path, classes):
    """One class name per line of ``path`` (``None``: ``class_0``...)."""
    if path is None:
        return _default_names(classes)
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) != classes:
        raise UsageError(f"{path} lists {len(names)} class names; the model has {classes} classes.")
    return names


def load_model(path):
    """Load a ``.keras`` file of an xbn model (xbn's layers, folded BatchNorms).

    ``keras.saving.load_model`` loads such a file too, once ``xbn.layers``
    (and, for folded models, ``xbn.fold``) has been imported: keras only
    imports the modules of its own packages by itself.  This function does
    both, and says so when keras cannot find a class.
    """
    import keras

    import xbn.fold  # noqa: F401  (registers FoldedBatchNorm)
    import xbn.layers  # noqa: F401  (registers the layers)

    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return keras.saving.load_model(path)
    except (TypeError, ValueError) as error:
        if "Could not locate" in str(error):
            raise UsageError(
                f"{path} uses layers that neither keras nor xbn provides (keras: "
                f"{str(error).split('Exception encountered:')[-1].strip()[:200]}...)."
            ) from None
        raise
