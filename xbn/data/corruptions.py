"""Common corruptions: the ImageNet-C benchmark at the model's input size.

Hendrycks & Dietterich ("Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019) define 15 corruptions in four
groups, each at severities 1 to 5: noise (Gaussian, shot, impulse), blur
(defocus, glass, motion, zoom), weather (snow, frost, fog) and digital
(brightness, contrast, elastic transform, pixelate, JPEG).  xbn applies them
to the image the model sees (after resizing, before preprocessing) with the
parameters of the authors' 32x32 definitions (their ``make_cifar_c.py``,
the CIFAR-10-C benchmark), which suit the 32x32 inputs of the study; images
of other sizes are corrupted with the same parameters.

Every corruption is a function ``f(image, severity, rng)`` of an
``(H, W, 3)`` float image in ``[0, 255]`` returning one of the same shape
and range; :func:`corrupt` seeds ``rng`` from the image's index, so every
model is scored on the very same corrupted images.

Differences from the reference code, which cannot run on this stack
(``imagecorruptions`` 1.1.2, the maintained package, fails to import: it
needs ``pkg_resources``, ``np.float_`` and scikit-image's removed
``multichannel`` argument, and OpenCV and ImageMagick besides):

- ``motion_blur`` and the streaks of ``snow`` use ImageMagick's motion blur
  as it is defined, a one-sided Gaussian-weighted average of copies of the
  image shifted along the blur direction, with edge pixels repeated;
- ``frost`` is not provided: it blends photographs of frost (six image files
  shipped with the benchmark), which xbn cannot ship or download.
  :data:`NOT_PROVIDED` says so and ``corrupt`` refuses it by name.

On the embedded digits (8x8 grey scans upsampled to 32x32, grey in all three
channels) every other corruption applies; the colour ones act on grey
(brightness lifts the grey level, snow's whitening uses it).

The benchmark's metrics (mCE, relative mCE) are in :mod:`xbn.diagnostics.corruptions`.
"""

import io
import math

import numpy as np

from xbn.errors import UsageError

SEVERITIES = (1, 2, 3, 4, 5)
NOT_PROVIDED = {
    "frost": "it blends photographs of frost shipped with the benchmark, which xbn cannot ship "
             "or download (no network at run time)",
}
GROUPS = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
# The benchmark's 15, in the paper's order.
ALL_CORRUPTIONS = tuple(name for group in GROUPS.values() for name in group)


def _unit(x):
    return np.asarray(x, np.float64) / 255.0


def _back(x):
    return np.clip(x, 0.0, 1.0) * 255.0


# -- noise -------------------------------------------------------------------------


def gaussian_noise(x, params, rng):
    """Additive Gaussian noise of standard deviation 0.04-0.10 (of the range)."""
    (c,) = params
    x = _unit(x)
    return _back(x + rng.normal(0.0, c, x.shape))


def shot_noise(x, params, rng):
    """Poisson (photon) noise: ``Poisson(x * c) / c`` with c = 500 ... 50."""
    (c,) = params
    return _back(rng.poisson(_unit(x) * c) / c)


def impulse_noise(x, params, rng):
    """Salt and pepper: a fraction 1%-7% of the values set to 0 or 1, half each."""
    (c,) = params
    x = _unit(x).copy()
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[hit & salt] = 1.0
    x[hit & ~salt] = 0.0
    return _back(x)


# -- helpers -------------------------------------------------------------------------


def _gaussian_1d(sigma, radius):
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-(k ** 2) / (2 * sigma ** 2))
    return weights / weights.sum()


def defocus_kernel(radius, alias_blur):
    """The defocus disk: pixels within ``radius`` of the centre of a 17x17 grid
    (wider for radii above 8), normalized, then antialiased by a 3x3 (5x5)
    Gaussian of standard deviation ``alias_blur``."""
    from scipy import ndimage

    half = 8 if radius <= 8 else int(math.ceil(radius))
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = _gaussian_1d(alias_blur, 1 if radius <= 8 else 2)
    return ndimage.correlate(disk, np.outer(g, g), mode="mirror")


def _filter(x, kernel):
    from scipy import ndimage

    return np.stack([ndimage.correlate(x[..., c], kernel, mode="mirror") for c in range(x.shape[-1])], -1)


def _skimage_gaussian(x, sigma):
    """scikit-image's ``gaussian`` on each channel: edge values repeated, 4 sigma."""
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


def _clipped_zoom(x, factor):
    """Zoom into the centre by ``factor`` (bilinear), keeping the size."""
    from scipy import ndimage

    h, w = x.shape[:2]
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndimage.zoom(x[top:top + ch, left:left + cw], (factor, factor) + (1,) * (x.ndim - 2), order=1)
    trim_top, trim_left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[trim_top:trim_top + h, trim_left:trim_left + w]


def motion_kernel(radius, sigma):
    """The weights of ImageMagick's motion blur: one-sided Gaussian, ``2 radius + 1`` taps."""
    width = 2 * int(radius) + 1
    weights = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma ** 2))
    return weights / weights.sum()


def _shift(x, dy, dx):
    """``x`` moved by ``(dy, dx)`` pixels, edge pixels repeated into the gap."""
    h, w = x.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return x[rows][:, cols]


def motion_blur_image(x, radius, sigma, angle):
    """Blur ``x`` along ``angle`` (degrees): a weighted sum of shifted copies."""
    weights = motion_kernel(radius, sigma)
    theta = math.radians(angle)
    out = np.zeros_like(x, dtype=np.float64)
    for i, weight in enumerate(weights):
        dy, dx = int(round(i * math.sin(theta))), int(round(i * math.cos(theta)))
        out += weight * _shift(x, dy, dx)
    return out


# -- blur --------------------------------------------------------------------------


def defocus_blur(x, params, rng):
    """Convolution with an antialiased disk of radius 0.3-1.5 pixels."""
    radius, alias = params
    return _back(_filter(_unit(x), defocus_kernel(radius, alias)))


def glass_blur(x, params, rng):
    """Gaussian blur, pixels swapped with a random neighbour (1-2 sweeps), blur again.

    A fractional number of sweeps ends with a partial sweep that swaps each
    pixel with that probability (levels between ImageNet-C's severities:
    one sweep of swaps is most of what a 16x16 digit can take).
    """
    sigma, delta, sweeps = params
    x = np.floor(_skimage_gaussian(_unit(x), sigma) * 255).astype(np.uint8)
    h, w = x.shape[:2]
    positions = [(row, col) for row in range(h - delta, delta, -1) for col in range(w - delta, delta, -1)]
    full, part = int(sweeps), sweeps - int(sweeps)
    for sweep in range(full + (part > 0)):
        # (dx, dy) per position, each in [-delta, delta) as the reference draws them.
        offsets = rng.integers(-delta, delta, size=(len(positions), 2)).tolist()
        chosen = rng.uniform(size=len(positions)) < part if sweep == full else None
        for i, ((row, col), (dx, dy)) in enumerate(zip(positions, offsets)):
            if chosen is not None and not chosen[i]:
                continue
            r, c = row + dy, col + dx
            pixel = x[row, col].copy()
            x[row, col] = x[r, c]
            x[r, c] = pixel
    return _back(_skimage_gaussian(x / 255.0, sigma))


def motion_blur(x, params, rng):
    """Motion blur of radius 6-9, sigma 1-2.5, at a random angle within 45 degrees."""
    radius, sigma = params
    return _back(motion_blur_image(_unit(x), radius, sigma, rng.uniform(-45, 45)))


def zoom_blur(x, params, rng):
    """The mean of the image and its zooms by 1.00 ... 1.05-1.25 (steps of 0.01)."""
    (top,) = params
    factors = np.arange(1, top, 0.01)
    x = _unit(x)
    out = sum(_clipped_zoom(x, factor) for factor in factors)
    return _back((x + out) / (len(factors) + 1))


# -- weather ---------------------------------------------------------------------------


def _grey(x):
    return x @ np.array([0.299, 0.587, 0.114])


def snow(x, params, rng):
    """Streaks of zoomed, thresholded, motion-blurred noise over a whitened image."""
    loc, scale, zoom, threshold, radius, sigma, keep = params
    x = _unit(x)
    layer = _clipped_zoom(rng.normal(loc, scale, x.shape[:2]), zoom)
    layer[layer < threshold] = 0
    layer = np.round(np.clip(layer, 0, 1) * 255) / 255  # an 8-bit image, as the reference blurs
    layer = motion_blur_image(layer[..., None], radius, sigma, rng.uniform(-135, -45))
    x = keep * x + (1 - keep) * np.maximum(x, _grey(x)[..., None] * 1.5 + 0.5)
    return _back(x + layer + np.rot90(layer, k=2))


def plasma_fractal(size, decay, rng):
    """A ``size`` x ``size`` (a power of two) diamond-square height map in ``[0, 1]``."""
    if size < 2 or size & (size - 1):
        raise UsageError(f"plasma_fractal: size must be a power of two >= 2; got {size}.")
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(values):
        return values / 4 + wibble * rng.uniform(-wibble, wibble, values.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        grid[half:size:step, half:size:step] = wibbled(squares)
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        grid[0:size:step, half:size:step] = wibbled(
            centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        grid[half:size:step, 0:size:step] = wibbled(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def fog(x, params, rng):
    """A plasma-fractal haze added, the result rescaled to the image's maximum."""
    strength, decay = params
    x = _unit(x)
    h, w = x.shape[:2]
    size = 1 << max(h, w, 2).bit_length() if max(h, w) & (max(h, w) - 1) else max(h, w)
    top = x.max()
    x = x + strength * plasma_fractal(size, decay, rng)[:h, :w, None]
    return _back(x * top / (top + strength))


# -- digital ---------------------------------------------------------------------------


def brightness(x, params, rng):
    """Value (of HSV) raised by 0.05-0.3."""
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    (c,) = params
    hsv = rgb_to_hsv(np.clip(_unit(x), 0, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _back(hsv_to_rgb(hsv))


def contrast(x, params, rng):
    """Deviations from each channel's mean scaled by 0.75 ... 0.15."""
    (c,) = params
    x = _unit(x)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _back((x - means) * c + means)


def elastic_transform(x, params, rng):
    """A random affine warp, then a smooth random displacement field."""
    from scipy import ndimage

    x = _unit(x)
    h, w = x.shape[:2]
    side = 32  # the reference's parameters are fractions of a 32-pixel image
    alpha, sigma, affine = np.array(params, np.float64) * side
    centre = np.array([h, w], np.float64) // 2
    third = min(h, w) // 3
    # Three points (row, col) moved at random define the affine map.
    source = np.array([centre + third, [centre[0] - third, centre[1] + third], centre - third])
    target = source + rng.uniform(-affine, affine, source.shape)
    # Solve target = A @ source + b, then pull back: output(p) = input(A^-1 (p - b)).
    design = np.hstack([source, np.ones((3, 1))])
    solution = np.linalg.solve(design, target)  # (3, 2): rows A^T then b
    matrix, offset = solution[:2].T, solution[2]
    inverse = np.linalg.inv(matrix)
    warped = np.stack([
        ndimage.affine_transform(x[..., c], inverse, offset=-inverse @ offset, order=1, mode="mirror")
        for c in range(x.shape[-1])
    ], -1)
    if alpha == 0 or sigma == 0:
        return _back(warped)
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [rows + dy, cols + dx]
    out = np.stack([ndimage.map_coordinates(warped[..., c], coords, order=1, mode="reflect")
                    for c in range(x.shape[-1])], -1)
    return _back(out)


def _pil(x):
    from PIL import Image

    return Image.fromarray(np.round(np.clip(x, 0, 255)).astype(np.uint8))


def pixelate(x, params, rng):
    """Box-downsampled to 95%-65% of the side and box-upsampled back."""
    from PIL import Image

    (c,) = params
    h, w = x.shape[:2]
    small = _pil(x).resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), np.float64)


def jpeg_compression(x, params, rng):
    """Encoded as JPEG at quality 80 ... 40 and decoded."""
    from PIL import Image

    (quality,) = params
    buffer = io.BytesIO()
    _pil(x).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), np.float64)


FUNCTIONS = {f.__name__: f for f in (
    gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur, snow, fog,
    brightness, contrast, elastic_transform, pixelate, jpeg_compression,
)}
# What ``--corruption all`` applies: the 15 less those not provided.
CORRUPTIONS = tuple(name for name in ALL_CORRUPTIONS if name in FUNCTIONS)


# Each corruption's parameters at ImageNet-C's severities 1 to 5 (the
# 32x32 definitions, as ``make_cifar_c.py`` has them), with two anchors of
# xbn's own: level 0, the corruption (almost) absent, and level 10, far
# beyond severity 5.  :func:`parameters` interpolates between them, so a
# suite calibrated for other images (:data:`SUITES`) names its severities
# as levels on ImageNet-C's own scale.
ANCHORS = {
    "gaussian_noise": {0: (0.0,), 1: (0.04,), 2: (0.06,), 3: (0.08,), 4: (0.09,), 5: (0.10,), 10: (0.5,)},
    "shot_noise": {0: (5000,), 1: (500,), 2: (250,), 3: (100,), 4: (75,), 5: (50,), 10: (2,)},
    "impulse_noise": {0: (0.0,), 1: (0.01,), 2: (0.02,), 3: (0.03,), 4: (0.05,), 5: (0.07,), 10: (0.4,)},
    "defocus_blur": {0: (0.0, 0.1), 1: (0.3, 0.4), 2: (0.4, 0.5), 3: (0.5, 0.6), 4: (1, 0.2), 5: (1.5, 0.1),
                     10: (4.0, 0.5)},
    "glass_blur": {0: (0.0, 1, 0), 1: (0.05, 1, 1), 2: (0.25, 1, 1), 3: (0.4, 1, 1), 4: (0.25, 1, 2),
                   5: (0.4, 1, 2), 10: (1.0, 2, 4)},
    "motion_blur": {0: (1, 0.1), 1: (6, 1), 2: (6, 1.5), 3: (6, 2), 4: (8, 2), 5: (9, 2.5), 10: (15, 6.0)},
    "zoom_blur": {0: (1.01,), 1: (1.06,), 2: (1.11,), 3: (1.16,), 4: (1.21,), 5: (1.26,), 10: (1.6,)},
    "snow": {0: (0.1, 0.2, 1, 1.0, 8, 3, 1.0), 1: (0.1, 0.2, 1, 0.6, 8, 3, 0.95), 2: (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             3: (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), 4: (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             5: (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8), 10: (0.45, 0.35, 1.5, 0.5, 16, 12, 0.6)},
    "fog": {0: (0.0, 3), 1: (0.2, 3), 2: (0.5, 3), 3: (0.75, 2.5), 4: (1, 2), 5: (1.5, 1.75), 10: (4.0, 1.5)},
    "brightness": {0: (0.0,), 1: (0.05,), 2: (0.1,), 3: (0.15,), 4: (0.2,), 5: (0.3,), 10: (0.85,)},
    "contrast": {0: (1.0,), 1: (0.75,), 2: (0.5,), 3: (0.4,), 4: (0.3,), 5: (0.15,), 10: (0.03,)},
    "elastic_transform": {0: (0, 0, 0), 1: (0, 0, 0.08), 2: (0.05, 0.2, 0.07), 3: (0.08, 0.06, 0.06),
                          4: (0.1, 0.04, 0.05), 5: (0.1, 0.03, 0.03), 10: (0.25, 0.03, 0.08)},
    "pixelate": {0: (1.0,), 1: (0.95,), 2: (0.9,), 3: (0.85,), 4: (0.75,), 5: (0.65,), 10: (0.2,)},
    "jpeg_compression": {0: (100,), 1: (80,), 2: (65,), 3: (58,), 4: (50,), 5: (40,), 10: (3,)},
}
# The parameters that are counts (rounded after interpolation).
INTEGER_PARAMETERS = {"glass_blur": (1,), "motion_blur": (0,), "snow": (4,), "jpeg_compression": (0,)}
MAX_LEVEL = 10.0


def parameters(name, level):
    """``name``'s parameters at ``level`` (0 to :data:`MAX_LEVEL`; the integers
    1 to 5 are ImageNet-C's severities exactly), interpolated linearly
    between :data:`ANCHORS`, counts rounded."""
    anchors = ANCHORS[name]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= MAX_LEVEL:
        raise UsageError(f"corruption {name}: a level must be a number from 0 to {MAX_LEVEL:g}; got {level!r}.")
    if level in anchors:
        return tuple(anchors[level])
    points = sorted(anchors)
    above = next(p for p in points if p > level)
    below = max(p for p in points if p < level)
    t = (level - below) / (above - below)
    values = [(1 - t) * a + t * b for a, b in zip(anchors[below], anchors[above])]
    for i in INTEGER_PARAMETERS.get(name, ()):
        values[i] = int(round(values[i]))
    return tuple(values)


def _suites():
    """The corruption suites: ImageNet-C's own severities, and those
    calibrated for small images (``data/corruption_suites.json``)."""
    import json
    from pathlib import Path

    suites = {"cifar-c": {name: tuple(float(s) for s in SEVERITIES) for name in ANCHORS}}
    calibrated = json.loads((Path(__file__).with_name("corruption_suites.json")).read_text(encoding="utf-8"))
    for suite, record in calibrated["suites"].items():
        suites[suite] = {name: tuple(levels) for name, levels in record["levels"].items()}
    return suites


# ``{suite: {corruption: five levels}}``: severity ``s`` of a corruption in a
# suite is :func:`parameters` at the suite's ``s``-th level.  ``cifar-c``
# is the benchmark's own (levels 1 to 5); ``16px`` was calibrated at 16x16
# on a trained reference network (scripts/calibrate_corruptions.py, the
# record beside the levels in data/corruption_suites.json).
SUITES = _suites()
DEFAULT_SUITE = "cifar-c"


def check_corruption(name, severity, suite=DEFAULT_SUITE, level=None):
    """Refuse an unknown corruption, severity or suite (or a level off the
    scale), naming the choices.  The arguments are a corruption's spec as
    :meth:`xbn.data.Pipeline.evaluation` takes it: ``(name, severity[,
    suite[, level]])``."""
    if name in NOT_PROVIDED:
        raise UsageError(f"corruption {name!r} is not provided: {NOT_PROVIDED[name]}. "
                         f"The others: {', '.join(CORRUPTIONS)}.")
    if name not in FUNCTIONS:
        raise UsageError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}.")
    if severity not in SEVERITIES or isinstance(severity, bool):
        raise UsageError(f"corruption {name}: severity must be an integer from 1 to 5; got {severity!r}.")
    if suite not in SUITES:
        raise UsageError(f"unknown corruption suite {suite!r}; choose from {', '.join(SUITES)}.")
    if level is not None:
        parameters(name, level)


def level_of(name, severity, suite=DEFAULT_SUITE):
    """The level (on ImageNet-C's scale) of ``severity`` of ``name`` in ``suite``."""
    check_corruption(name, severity, suite)
    return SUITES[suite][name][int(severity) - 1]


def corrupt(image, name, severity, seed=0, suite=DEFAULT_SUITE, level=None):
    """``image`` (``(H, W, 3)``, values in ``[0, 255]``) corrupted; deterministic in ``seed``.

    ``severity`` (1 to 5) is looked up in ``suite`` (:data:`SUITES`);
    ``level`` instead gives the strength directly on ImageNet-C's scale
    (0 to 10, calibration's use; the random draws are then keyed by
    ``severity``).  Returns a float32 array of the same shape with values
    in ``[0, 255]``.
    """
    check_corruption(name, severity, suite, level)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise UsageError(f"corrupt: expected an (H, W, 3) image; got shape {image.shape}.")
    params = parameters(name, level_of(name, severity, suite) if level is None else level)
    rng = np.random.default_rng([int(seed), ALL_CORRUPTIONS.index(name), int(severity)])
    return np.clip(FUNCTIONS[name](image.astype(np.float64), params, rng), 0, 255).astype(np.float32)


def parse_corruptions(items):
    """``NAME:SEVERITY``, ``NAME`` (all severities) or ``all`` items to ``(name, severity)`` pairs."""
    pairs = []
    for item in items:
        if item == "all":
            pairs += [(name, s) for name in CORRUPTIONS for s in SEVERITIES]
            continue
        name, sep, severity = item.partition(":")
        if sep:
            try:
                level = int(severity)
            except ValueError:
                raise UsageError(f"`corruption` {item}: the severity must be an integer from 1 to 5.") from None
            levels = [level]
        else:
            levels = list(SEVERITIES)
        for level in levels:
            check_corruption(name, level)
            pairs.append((name, level))
    return list(dict.fromkeys(pairs))


def corrupt_in_graph(index, image, name, severity, suite=DEFAULT_SUITE, level=None):
    """The TensorFlow form of :func:`corrupt` for a ``tf.data`` map (seed: the example's index)."""
    import tensorflow as tf

    check_corruption(name, severity, suite, level)
    out = tf.numpy_function(lambda i, x: corrupt(x, name, severity, seed=int(i), suite=suite, level=level),
                            [index, tf.cast(image, tf.float32)], tf.float32, stateful=False)
    out.set_shape(image.shape)
    return out
