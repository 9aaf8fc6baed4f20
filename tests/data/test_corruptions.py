"""The ImageNet-C corruptions against hand-computed cases and their definitions."""

import math

import numpy as np
import pytest

from xbn.data import Augment, Pipeline, load_source
from xbn.data import corruptions as C
from xbn.data.pipeline import eval_image
from xbn.diagnostics.corruptions import corruption_errors, corruption_table

GREY = np.full((32, 32, 3), 128.0)


def digit():
    """A real digit at the study's input size: an 8x8 scan in 4x4 blocks, grey in 3 channels."""
    from sklearn.datasets import load_digits

    scan = load_digits().images[5] / 16 * 255
    return np.repeat(np.kron(scan, np.ones((4, 4)))[..., None], 3, axis=-1)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_every_corruption_keeps_shape_and_range_is_deterministic_and_grows_with_severity(name):
    image = digit()
    outs = [C.corrupt(image, name, s, seed=7) for s in C.SEVERITIES]
    for s, out in zip(C.SEVERITIES, outs):
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
        np.testing.assert_array_equal(out, C.corrupt(image, name, s, seed=7))  # same seed, same image
    # Some corruption at every severity, and severity 5 further from the clean
    # image than severity 1 (single steps can invert for random ones, and the
    # elastic transform's severity 1 is a larger affine warp than its 5's).
    distance = [np.abs(out - image).mean() for out in outs]
    assert min(distance) > 0
    assert distance[-1] > distance[0] or name == "elastic_transform"
    assert not np.array_equal(C.corrupt(image, name, 3, seed=1), C.corrupt(image, name, 3, seed=2)) or name in (
        "defocus_blur", "zoom_blur", "contrast", "brightness", "pixelate", "jpeg_compression")


@pytest.mark.parametrize("name", ["defocus_blur", "glass_blur", "zoom_blur", "elastic_transform", "pixelate",
                                  "jpeg_compression"])
def test_blurs_and_geometric_corruptions_leave_a_constant_image_alone(name):
    for severity in C.SEVERITIES:
        np.testing.assert_allclose(C.corrupt(GREY, name, severity), GREY, atol=1.0)


def test_motion_blur_of_a_constant_image_and_of_a_dot_along_a_row():
    for severity in C.SEVERITIES:
        np.testing.assert_allclose(C.corrupt(GREY, "motion_blur", severity), GREY, atol=1e-4)
    # One-sided Gaussian weights exp(-i^2 / (2 sigma^2)), i = 0 .. 2 radius, normalized.
    radius, sigma = 6, 1.5
    weights = np.exp(-np.arange(13) ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    np.testing.assert_allclose(C.motion_kernel(radius, sigma), weights)
    dot = np.zeros((32, 32, 1))
    dot[16, 4] = 1.0
    out = C.motion_blur_image(dot, radius, sigma, angle=0.0)[..., 0]
    np.testing.assert_allclose(out[16, 4:17], weights)  # the dot smeared to the right
    assert out.sum() == pytest.approx(1.0) and np.count_nonzero(out) == 13


def test_contrast_by_hand():
    image = np.zeros((2, 2, 3))
    image[0, 1] = image[1, 0] = 255.0  # mean 127.5 per channel
    out = C.corrupt(image, "contrast", 1)  # deviations times 0.75
    np.testing.assert_allclose(out[..., 0], [[31.875, 223.125], [223.125, 31.875]], rtol=1e-6)
    out = C.corrupt(image, "contrast", 5)  # times 0.15
    np.testing.assert_allclose(out[0, 0], 127.5 - 0.15 * 127.5, rtol=1e-6)


def test_brightness_by_hand():
    # Grey 100: value 100/255 + 0.05 -> 112.75 in every channel (saturation 0).
    np.testing.assert_allclose(C.corrupt(np.full((4, 4, 3), 100.0), "brightness", 1), 112.75, rtol=1e-5)
    # Pure red already has value 1: unchanged.
    red = np.zeros((4, 4, 3))
    red[..., 0] = 255.0
    np.testing.assert_allclose(C.corrupt(red, "brightness", 5), red, atol=1e-3)
    # Value 0.9 + 0.3 clips at 1: 229.5 -> 255.
    np.testing.assert_allclose(C.corrupt(np.full((2, 2, 3), 229.5), "brightness", 5), 255.0, rtol=1e-6)


@pytest.mark.parametrize("severity, sigma", [(1, 0.04), (3, 0.08), (5, 0.10)])
def test_gaussian_noise_has_the_published_standard_deviation(severity, sigma):
    noise = (C.corrupt(GREY, "gaussian_noise", severity) - GREY) / 255
    # 3,072 values: the sample SD is within 4% of sigma with overwhelming probability.
    assert noise.std() == pytest.approx(sigma, rel=0.04)
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(noise.size)


@pytest.mark.parametrize("severity, photons", [(1, 500), (5, 50)])
def test_shot_noise_is_poisson_with_the_published_photon_count(severity, photons):
    out = C.corrupt(np.full((64, 64, 3), 127.5), "shot_noise", severity) / 255
    counts = out * photons  # whole photon counts
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    # Poisson(0.5 c) / c: mean 0.5, variance 0.5 / c.
    assert out.mean() == pytest.approx(0.5, abs=4 * math.sqrt(0.5 / photons / out.size))
    assert out.var() == pytest.approx(0.5 / photons, rel=0.06)


@pytest.mark.parametrize("severity, amount", [(1, 0.01), (5, 0.07)])
def test_impulse_noise_sets_the_published_fraction_to_black_or_white(severity, amount):
    out = C.corrupt(np.full((64, 64, 3), 128.0), "impulse_noise", severity)
    hit = out != 128.0
    assert set(np.unique(out[hit])) <= {0.0, 255.0}
    n = out.size
    assert hit.mean() == pytest.approx(amount, abs=4 * math.sqrt(amount * (1 - amount) / n))
    assert (out[hit] == 255.0).mean() == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / hit.sum()))


def test_defocus_kernels_by_hand():
    # Radius 0.3: the disk is the centre pixel; the 3x3 Gaussian of SD 0.4 spreads it:
    # weights (e^-3.125, 1, e^-3.125) / (1 + 2 e^-3.125) per axis.
    edge = math.exp(-1 / (2 * 0.4 ** 2))
    g = np.array([edge, 1.0, edge]) / (1 + 2 * edge)
    kernel = C.defocus_kernel(0.3, 0.4)
    assert kernel.shape == (17, 17) and kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel[7:10, 7:10], np.outer(g, g), rtol=1e-12)
    assert np.count_nonzero(kernel) == 9
    # Radius 1: the centre and its 4 neighbours, a fifth each, before antialiasing.
    disk = C.defocus_kernel(1, 1e-3)
    np.testing.assert_allclose(disk[8, 7:10], [0.2, 0.2, 0.2], atol=1e-12)
    np.testing.assert_allclose(disk[7, 7], 0.0, atol=1e-12)


def test_fog_keeps_black_and_plasma_spans_zero_to_one():
    rng = np.random.default_rng(0)
    plasma = C.plasma_fractal(32, 2.0, rng)
    assert plasma.shape == (32, 32) and plasma.min() == 0.0 and plasma.max() == 1.0
    black = np.zeros((32, 32, 3))
    for severity in C.SEVERITIES:  # x * max / (max + c) with max = 0: black stays black
        np.testing.assert_array_equal(C.corrupt(black, "fog", severity), black)
    white = C.corrupt(np.full((32, 32, 3), 255.0), "fog", 5) / 255  # (1 + 1.5 p) / 2.5, clipped
    assert white.min() == pytest.approx(1 / 2.5, abs=1e-6) and white.max() == 1.0
    with pytest.raises(ValueError, match="power of two"):
        C.plasma_fractal(24, 2.0, rng)


def test_zoom_blur_by_hand_on_a_centred_square():
    # A bright centre pixel block survives every zoom at the centre; the mean of
    # the image and its zooms keeps the centre at full brightness.
    image = np.zeros((32, 32, 3))
    image[12:20, 12:20] = 255.0
    out = C.corrupt(image, "zoom_blur", 1)
    np.testing.assert_allclose(out[15:17, 15:17], 255.0, rtol=1e-5)
    np.testing.assert_array_equal(out[:8], 0.0)  # far from the square: still black
    strong = C.corrupt(image, "zoom_blur", 5)  # zooms up to 1.25: the 8-pixel square grows to 10
    assert 0 < strong[11, 15, 0] < 255 and 0 < strong[20, 15, 0] < 255


def test_jpeg_and_pixelate_follow_pillow():
    from PIL import Image

    image = digit()
    pil = Image.fromarray(np.round(image).astype(np.uint8))
    small = pil.resize((int(32 * 0.65), int(32 * 0.65)), Image.BOX).resize((32, 32), Image.BOX)
    np.testing.assert_array_equal(C.corrupt(image, "pixelate", 5), np.asarray(small, np.float32))
    out = C.corrupt(image, "jpeg_compression", 5)
    assert 0 < np.abs(out - image).mean() < 20  # lossy at quality 40, but the same digit


def test_names_and_severities_are_checked():
    assert len(C.ALL_CORRUPTIONS) == 15 and set(C.ALL_CORRUPTIONS) - set(C.CORRUPTIONS) == {"frost"}
    assert len(C.parse_corruptions(["all"])) == 14 * 5
    assert C.parse_corruptions(["contrast", "fog:2", "fog:2"]) == [("contrast", s) for s in range(1, 6)] + [("fog", 2)]
    with pytest.raises(ValueError, match="'frost' is not provided: it blends photographs"):
        C.parse_corruptions(["frost:1"])
    with pytest.raises(ValueError, match="unknown corruption 'blur'; choose from gaussian_noise"):
        C.parse_corruptions(["blur:3"])
    with pytest.raises(ValueError, match="severity must be an integer from 1 to 5; got 6"):
        C.parse_corruptions(["contrast:6"])
    with pytest.raises(ValueError, match="the severity must be an integer"):
        C.parse_corruptions(["contrast:high"])
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image"):
        C.corrupt(np.zeros((8, 8)), "contrast", 1)


def test_mce_and_relative_mce_by_hand():
    model = {"a": {1: 0.9, 2: 0.8}, "b": {1: 0.7, 2: 0.7}}
    base = {"a": {1: 0.8, 2: 0.6}, "b": {1: 0.5, 2: 0.5}}
    figures = corruption_errors(model, 0.95, (base, 0.9))
    # CE_a = (0.1 + 0.2) / (0.2 + 0.4); CE_b = 0.6 / 1.0
    assert figures["ce"] == pytest.approx({"a": 0.5, "b": 0.6})
    assert figures["mce"] == pytest.approx(0.55)
    # relative: a (0.05 + 0.15) / (0.1 + 0.3) = 0.5; b (0.25 + 0.25) / (0.4 + 0.4) = 0.625
    assert figures["relative_ce"] == pytest.approx({"a": 0.5, "b": 0.625})
    assert figures["relative_mce"] == pytest.approx(0.5625)
    assert figures["mean_error"] == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.3]))
    assert corruption_errors(model, 0.95) == {"mean_error": pytest.approx(0.225)}
    with pytest.raises(ValueError, match="baseline was not scored on b"):
        corruption_errors(model, 0.95, ({"a": base["a"], "b": {1: 0.5}}, 0.9))
    table, _ = corruption_table(model, 0.95, (base, 0.9))
    assert "| a | 90.0 | 80.0 | 15.0 | 50.0 | 50.0 |" in table
    assert "mCE 55.0%, relative mCE 56.2%" in table


def test_the_table_says_what_is_left_out_and_what_is_noise():
    """--corruption all printed 14 rows without a word on frost, and rows above
    clean accuracy and relative CEs of -119% to +165% without a word on noise."""
    from xbn.diagnostics.corruptions import CORRUPTIONS, RELATIVE_FLOOR

    model = {n: {1: 0.9, 2: 0.85} for n in CORRUPTIONS}
    model["fog"] = {1: 0.97, 2: 0.96}  # above the clean 0.95
    base = {n: {1: 0.8, 2: 0.7} for n in CORRUPTIONS}
    base["contrast"] = {1: 0.895, 2: 0.89}  # loses 0.5 and 1 point to it: below the floor
    table, figures = corruption_table(model, 0.95, (base, 0.9))
    assert "Not scored: frost (it blends photographs of frost" in table
    assert "2 score(s) lie above the clean top-1 (by up to 2.0 points)" in table
    assert math.isnan(figures["relative_ce"]["contrast"]) and RELATIVE_FLOOR == 0.02
    assert "Relative CE left out (-) for contrast: the baseline loses less than 2 points" in table
    assert "| contrast | 90.0 | 85.0 | 12.5 |" in table
    assert table.split("| contrast |")[1].splitlines()[0].endswith("| - |")
    partial, _ = corruption_table({"fog": model["fog"]}, 0.95)
    assert "Not scored" not in partial  # only what was asked for


def test_the_evaluation_pipeline_corrupts_each_image_by_its_index():
    source = load_source("digits")
    pipeline = Pipeline(source, 32, "torch", 8, augment=Augment(eval_crop=1.0))
    images, _ = next(iter(pipeline.evaluation("test", corruption=("gaussian_noise", 3))))
    again, _ = next(iter(pipeline.evaluation("test", corruption=("gaussian_noise", 3))))
    np.testing.assert_array_equal(images.numpy(), again.numpy())
    raw = next(iter(source.split("test").indexed().take(1)))[1][0]
    clean = eval_image(raw, 32, 1.0).numpy()
    expected = C.corrupt(clean, "gaussian_noise", 3, seed=0)
    # torch preprocessing: /255, minus the ImageNet mean, over its SD.
    mean, sd = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(images[0].numpy(), (expected / 255 - mean) / sd, atol=1e-5)
    assert not np.allclose(images[0].numpy(), (clean / 255 - mean) / sd, atol=1e-2)
    with pytest.raises(ValueError, match="unknown corruption"):
        pipeline.evaluation("test", corruption=("rain", 1))
