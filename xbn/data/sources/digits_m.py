"""``digits_m``: scikit-learn's digits blended into crops of real photographs.

The recipe of MNIST-M (Ganin & Lempitsky, 2015, "Unsupervised Domain
Adaptation by Backpropagation"): a digit scan, scaled to the image size, is
blended into a random crop of a colour photograph by the absolute
difference, ``|background - digit|`` per channel, so the strokes invert the
photograph's colours where they lie.  Nothing is downloaded: the scans are
scikit-learn's 1,797 digits and the photographs the fourteen that
scikit-image and scikit-learn ship inside their wheels.

- **Splits** follow the scans: the digits' fixed stratified 70/10/20 %
  split (the ``digits`` source's own), so no scan is in two splits and the
  plain ``digits`` test split is this one's test scans unblended, a real
  distribution shift (train on one, test on the other).
- **Renders**: each scan is drawn ``renders`` times per split (default 2, 4
  and 6: 2,516 training, 720 validation and 2,154 test images), each on its
  own crop (a random photograph, position and scale) and with its own
  stroke contrast, drawn from ``seed``: the same images on every machine.
- **Difficulty**: a converged CIFAR ResNet-20 reaches 80% to 92% test top-1
  at 16x16 (measured in the study, models/study/README.md), where the plain digits
  sit at 97% to 99%, so the normalizations have room to differ.
"""

import functools

import numpy as np

from xbn import _checks
from xbn.data.sources import SCAN_DEFAULTS, SPLIT_SEED, DataSource, array_split, register_source, stratified_split
from xbn.data.sources.digits import DIGITS_FRACTIONS
from xbn.errors import UsageError

# Colour photographs shipped in scikit-image's wheel (skimage/data), and
# scikit-learn's two sample images.
SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png",
                  "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
                  "rocket.jpg")
# The strokes' contrast: |background - contrast * digit| with contrast drawn
# uniformly from this range (1 is MNIST-M's; lower makes faint strokes).
CONTRAST = (0.5, 1.0)
SPLITS = ("train", "val", "test")


def photographs():
    """The background photographs as ``uint8 [H, W, 3]`` arrays, in a fixed order."""
    from pathlib import Path

    import skimage
    from PIL import Image
    from sklearn.datasets import load_sample_images

    folder = Path(skimage.__file__).parent / "data"
    photos = []
    for name in SKIMAGE_PHOTOS:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"`data` digits_m: scikit-image's photograph {name} is not in {folder}; install "
                "scikit-image>=0.22, whose wheel ships it."
            )
        with Image.open(folder / name) as file:
            image = np.asarray(file.convert("RGB"))
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    photos += [np.asarray(image, np.uint8) for image in load_sample_images().images]
    return photos


def _resize(image, size, resample):
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), resample))


def render(scans, photos, size, renders, rng):
    """Blend each of ``scans`` (``uint8 [N, h, w]``, ink 255 on 0)
    ``renders`` times into photograph crops; returns ``uint8 [N * renders,
    size, size, 3]`` (the renders of a scan next to each other)."""
    from PIL import Image

    strokes = [_resize(np.ascontiguousarray(scan), size, Image.BILINEAR) for scan in scans]
    out = np.empty((len(scans) * renders, size, size, 3), np.uint8)
    for i, stroke in enumerate(strokes):
        for r in range(renders):
            photo = photos[rng.integers(len(photos))]
            height, width = photo.shape[:2]
            side = int(rng.integers(size, max(size + 1, min(height, width) // 4)))
            top, left = rng.integers(height - side + 1), rng.integers(width - side + 1)
            background = _resize(np.ascontiguousarray(photo[top:top + side, left:left + side]), size, Image.BILINEAR)
            contrast = rng.uniform(*CONTRAST)
            blended = np.abs(background.astype(np.float32) - contrast * stroke[..., None].astype(np.float32))
            out[i * renders + r] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out


def render_options(renders):
    """The ``data_args`` of a source of blended scans, ``renders`` per split by default."""
    return {
        "renders": (renders, "renders of each scan in the train, val and test splits"),
        "size": (32, "side of the rendered images"),
        "seed": (SPLIT_SEED, "seed of the crops and contrasts"),
    }


def blended_source(spec, kind, classes, rendered_of, renders, size, seed):
    """A :class:`DataSource` of blended scans: the options checked, then
    ``rendered_of(renders, size, seed)`` (``{split: (images, labels)}``)."""
    if not (isinstance(renders, (tuple, list)) and len(renders) == 3):
        raise UsageError(f"`data_args` renders must be three counts (train, val, test); got {renders!r}.")
    renders = tuple(_checks.check_int(f"`data` {spec}", "renders", count, minimum=1) for count in renders)
    size = _checks.check_int(f"`data` {spec}", "size", size, minimum=8)
    seed = _checks.check_int(f"`data` {spec}", "seed", seed, minimum=0)
    rendered = rendered_of(renders, size, seed)
    splits = {name: array_split(name, images, labels) for name, (images, labels) in rendered.items()}
    total = sum(images.nbytes for images, _ in rendered.values())
    return DataSource(spec, kind, classes, splits, decoded_bytes=total)


@register_source(
    "digits_m", image_defaults=SCAN_DEFAULTS, options=render_options((2, 4, 6)),
    description="scikit-learn's digits blended into crops of photographs (MNIST-M's recipe; 2,154 test images)",
)
def open_digits_m(spec, arg, val_split, skip_bad_images, progress, renders, size, seed):
    return blended_source(spec, "digits_m", [str(d) for d in range(10)], _rendered, renders, size, seed)


@functools.lru_cache(maxsize=2)
def _rendered(renders, size, seed):
    """``{split: (images, labels)}``, rendered once per process (2 s)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    photos = photographs()
    rendered = {}
    for index, (name, scan_ids, count) in enumerate(zip(SPLITS, stratified_split(labels, DIGITS_FRACTIONS),
                                                        renders)):
        rng = np.random.default_rng([seed, index])
        grey = np.round(digits.images[scan_ids] * (255.0 / 16.0)).astype(np.uint8)
        images = render(grey, photos, size, count, rng)
        images.setflags(write=False)
        rendered[name] = (images, np.repeat(labels[scan_ids], count))
    return rendered
