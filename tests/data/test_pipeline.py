"""The tf.data pipeline: shapes, preprocessing, determinism, crops."""

import numpy as np
import pytest
import tensorflow as tf

from xbn.data import Augment, Pipeline, load_source
from xbn.data.pipeline import eval_image, train_image


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_training_batches(digits):
    pipe = Pipeline(digits, 32, "tf", 50, seed=3, augment=Augment(crop_scale=(0.5, 1.0)))
    batches = _batches(pipe.train(epoch=0))
    assert len(batches) == pipe.steps("train", training=True) == 1258 // 50
    x, y = batches[0]
    assert x.shape == (50, 32, 32, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0  # the "tf" mode of MobileNetV2
    assert y.dtype == np.int32
    # an epoch is a permutation of distinct training examples (drop_remainder)
    assert sum(len(b[1]) for b in batches) == 25 * 50


def test_same_seed_same_batches_other_epoch_or_seed_other_batches(digits):
    def first(seed, epoch):
        return _batches(Pipeline(digits, 32, "tf", 16, seed=seed).train(epoch))[0][0]

    np.testing.assert_array_equal(first(1, 2), first(1, 2))
    assert not np.array_equal(first(1, 2), first(1, 3))
    assert not np.array_equal(first(1, 2), first(2, 2))


def test_cache_changes_nothing_but_speed(digits):
    a = _batches(Pipeline(digits, 32, "caffe", 64, seed=1, cache=False).train(1))
    b = _batches(Pipeline(digits, 32, "caffe", 64, seed=1, cache=True).train(1))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_evaluation_covers_the_split_in_order(digits):
    pipe = Pipeline(digits, 32, "torch", 100)
    batches = _batches(pipe.evaluation("test"))
    labels = np.concatenate([y for _, y in batches])
    expected = np.asarray([int(label) for _, label in digits.split("test").make()])
    np.testing.assert_array_equal(labels, expected)
    assert len(batches) == pipe.steps("test", training=False) == 4


def test_eval_crop_keeps_the_centre():
    # A 60x120 image: a white 20x20 square in the middle, black elsewhere.
    image = np.zeros((60, 120, 3), np.uint8)
    image[20:40, 50:70] = 255
    out = eval_image(tf.constant(image), 32, crop_fraction=0.5).numpy()
    assert out.shape == (32, 32, 3)
    # shorter side 60 -> 64 (32 / 0.5): the square becomes ~21 px, centred.
    centre = out[8:24, 8:24]
    assert centre.min() > 250
    assert out[0, 0].max() < 5 and out[-1, -1].max() < 5


def test_train_crop_stays_inside_and_is_resized():
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    augment = Augment(crop_scale=(0.2, 0.4), flip=True)
    out = train_image(image, 24, augment, tf.constant([4, 2], tf.int64)).numpy()
    assert out.shape == (24, 24, 3)
    assert 0 <= out.min() and out.max() <= 255


@pytest.mark.parametrize(
    "kwargs, message",
    [({"crop_scale": (0.5, 0.2)}, r"`crop_scale` must be \(MIN, MAX\) with MIN <= MAX \(0.2, 0.5\?\)"),
     ({"crop_scale": (0.0, 1.0)}, r"Augment: argument `crop_scale` must be a finite number in \(0.0, 1.0\]"),
     ({"eval_crop": 1.5}, "eval_crop")],
)
def test_bad_augment_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augment(**kwargs)


# -- non-finite pixels ---------------------------------------------------------------
def _float_source(pixels, origin="--data numpy:/data/x.npz"):
    from xbn.data import DataSource, Split

    labels = (np.arange(len(pixels)) % 2).astype(np.int32)
    make = lambda: tf.data.Dataset.from_tensor_slices((pixels, labels))  # noqa: E731
    splits = {name: Split(name, len(pixels), make, origin=origin) for name in ("train", "test")}
    return DataSource("numpy:/data/x.npz", "numpy", ["a", "b"], splits)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("phase", ["train", "evaluation"])
def test_non_finite_float_pixels_are_named_where_they_enter(bad, phase):
    from xbn.data.images import NonFiniteImageError, named_bad_input

    pixels = np.full((6, 8, 8, 3), 100.0, np.float32)
    pixels[4, 2, 3, 1] = bad
    pipe = Pipeline(_float_source(pixels), 32, "tf", 2, cache=True)
    split = "train" if phase == "train" else "test"
    batches = pipe.train(0) if phase == "train" else pipe.evaluation("test")
    with pytest.raises(NonFiniteImageError) as info:
        with named_bad_input():
            list(batches)
    assert str(info.value).startswith(
        f"example 4 of the '{split}' split of --data numpy:/data/x.npz has non-finite pixel values (NaN or inf)"
    )


def test_finite_float_pixels_give_the_batches_of_the_same_uint8_pixels():
    values = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3)).astype(np.uint8)
    as_float = Pipeline(_float_source(values.astype(np.float32)), 32, "tf", 3).evaluation("test")
    as_uint8 = Pipeline(_float_source(values), 32, "tf", 3).evaluation("test")
    for (a, ya), (b, yb) in zip(as_float, as_uint8):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
        np.testing.assert_array_equal(ya, yb)


def test_a_separate_validation_source_is_named_by_its_own_flag(tmp_path):
    import datasets

    datasets.write_folder(tmp_path / "a", classes=(0, 1), per_class=2)
    source = load_source(f"folder:{tmp_path / 'a'}", val_data=f"folder:{tmp_path / 'a'}", val_split=0.0)
    assert source.split("train").describe() == f"the 'train' split of `data` folder:{tmp_path / 'a'}"
    assert source.split("val").describe() == f"the 'val' split of `val_data` folder:{tmp_path / 'a'}"
