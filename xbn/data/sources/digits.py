"""``digits``: scikit-learn's handwritten digits.

1,797 real 8x8 scans shipped inside the scikit-learn wheel, grey levels
0..16 scaled to 0..255 and repeated over three channels, with a fixed
stratified train/val/test split of 70/10/20 %.  The split never depends on
``--seed`` or ``--val-split``.  Option ``labelled``: the fraction of each
class of the training split kept (``--data-arg labelled=0.1``: a tenth of
the labels, for learning from few examples); the val and test splits stay
whole.
"""

import numpy as np

from xbn import _checks
from xbn.data.sources import SCAN_DEFAULTS, DataSource, array_split, register_source, stratified_split

DIGITS_FRACTIONS = (0.7, 0.1, 0.2)


@register_source(
    "digits", image_defaults=SCAN_DEFAULTS,
    options={"labelled": (1.0, "fraction of each class of the training split kept (few labels)")},
    description="scikit-learn's 1,797 8x8 digit scans (fixed 70/10/20 split)",
)
def open_digits(spec, arg, val_split, skip_bad_images, progress, labelled):
    from sklearn.datasets import load_digits

    labelled = _checks.check_float(f"`data` {spec}", "labelled", labelled, minimum=0.0, maximum=1.0,
                                   min_inclusive=False)
    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    train, val, test = stratified_split(labels, DIGITS_FRACTIONS)
    if labelled < 1.0:  # the same scans for every run: a fixed seed, a share of every class
        train = train[stratified_split(labels[train], (labelled, 1.0 - labelled))[0]]
    splits = {
        name: array_split(name, rgb[idx], labels[idx])
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    return DataSource(spec, "digits", [str(d) for d in range(10)], splits, decoded_bytes=rgb.nbytes)
