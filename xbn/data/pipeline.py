"""tf.data input pipelines for training and evaluation.

Training: decode (in parallel) -> optional cache -> shuffle -> random
resized crop and horizontal flip -> the model's own preprocessing -> batch
-> prefetch.  Evaluation: decode -> resize the shorter side to
``size / eval_crop`` -> center crop -> preprocessing -> batch -> prefetch.

Randomness is stateless and keyed by ``(seed, epoch, example index)``: the
same ``--seed`` gives the same crops and the same order on every run, with
any degree of parallelism, and a run resumed at epoch ``k`` sees exactly the
epochs an uninterrupted run would have seen.
"""

import dataclasses

import tensorflow as tf

from xbn import _checks
from xbn.data.corruptions import check_corruption, corrupt_in_graph
from xbn.errors import UsageError
from xbn.models.preprocessing import preprocess_images


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation and evaluation cropping.

    Attributes:
        crop_scale: ``(min, max)`` fraction of the image area a training crop
            covers (Inception-style random resized crop; ImageNet: 0.08-1).
        crop_ratio: ``(min, max)`` aspect ratio of the crop.
        flip: random horizontal flips (off for digits: a mirrored 3 is no 3).
        eval_crop: central fraction kept at evaluation (0.875 is ImageNet's
            224/256; 1.0 keeps the whole image).
    """

    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    eval_crop: float = 0.875

    def __post_init__(self):
        object.__setattr__(self, "crop_scale", _checks.check_crop_scale("Augment", self.crop_scale))  # frozen
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise UsageError(f"Augment: crop_ratio must satisfy 0 < MIN <= MAX; got {self.crop_ratio}.")
        object.__setattr__(self, "eval_crop", _checks.check_eval_crop("Augment", self.eval_crop))


def _seed(base, epoch):
    """A stateless-op seed for (run seed, epoch)."""
    return tf.constant([base, 0], tf.int64) + tf.constant([0, 1_000_003], tf.int64) * epoch


def train_image(image, size, augment, seed):
    """Random resized crop and flip of a uint8 image -> float32 [size, size, 3]."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros([1, 0, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=augment.crop_ratio,
        area_range=augment.crop_scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    out = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
    out.set_shape([size, size, 3])  # the dynamic slice loses the channel count
    if augment.flip:
        out = tf.image.stateless_random_flip_left_right(out, seed=seed + 1)
    return out


def eval_image(image, size, crop_fraction):
    """Resize the shorter side to ``size / crop_fraction``, center-crop ``size``."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (size / crop_fraction) / tf.reduce_min(shape)
    resized = tf.cast(tf.math.round(shape * scale), tf.int32)
    resized = tf.maximum(resized, size)
    out = tf.image.resize(image, resized, method="bilinear", antialias=True)
    top = (resized[0] - size) // 2
    left = (resized[1] - size) // 2
    out = tf.image.crop_to_bounding_box(out, top, left, size, size)
    out.set_shape([size, size, 3])
    return out


class Pipeline:
    """Datasets of one source for a given model input.

    Args:
        source: a :class:`~xbn.data.sources.DataSource`.
        image_size: model input side.
        preprocessing: the model's preprocessing mode (its facts).
        batch_size: global batch size.
        seed: run seed.
        augment: an :class:`Augment`.
        cache: keep decoded images in memory after the first epoch.
        shuffle_buffer: at most this many examples are shuffled at a time.
    """

    def __init__(
        self, source, image_size, preprocessing, batch_size, seed=0, augment=Augment(),
        cache=False, shuffle_buffer=16384,
    ):
        self.source = source
        self.image_size = int(image_size)
        self.preprocessing = preprocessing
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.augment = augment
        self.cache = cache
        self.shuffle_buffer = int(shuffle_buffer)
        self._bases = {}

    def _base(self, split_name):
        """The decoded, indexed, checked (and cached) examples of a split, built once.

        Float images are checked for NaN and infinity before the cache, so
        once per example (:meth:`Split.indexed`).
        """
        if split_name not in self._bases:
            ds = self.source.split(split_name).indexed()
            if self.cache:
                ds = ds.cache()
            self._bases[split_name] = ds
        return self._bases[split_name]

    def steps(self, split_name, training):
        size = self.source.split(split_name).size
        return size // self.batch_size if training else -(-size // self.batch_size)

    def train(self, epoch=0, split_name="train"):
        """One epoch of augmented, shuffled, batched training examples."""
        size, mode, augment = self.image_size, self.preprocessing, self.augment
        epoch_seed = _seed(self.seed, epoch)
        buffer = min(self.shuffle_buffer, self.source.split(split_name).size)
        ds = self._base(split_name).shuffle(
            buffer, seed=self.seed * 7919 + epoch, reshuffle_each_iteration=False
        )

        def transform(index, example):
            image, label = example
            seed = epoch_seed + tf.stack([tf.constant(0, tf.int64), 2 * index])
            return preprocess_images(train_image(image, size, augment, seed), mode), label

        ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
        return self._finish(ds.batch(self.batch_size, drop_remainder=True))

    def evaluation(self, split_name, corruption=None):
        """The whole split, center-cropped and batched, in a fixed order.

        ``corruption``: a ``(name, severity[, suite[, level]])`` of
        :mod:`xbn.data.corruptions` (:func:`~xbn.data.corruptions.corrupt`'s
        arguments) applied to every image at the model's input size, before preprocessing,
        seeded by the image's index (the same corrupted images every time).
        """
        size, mode, fraction = self.image_size, self.preprocessing, self.augment.eval_crop
        if corruption is not None:  # refused here, not inside the map's trace
            check_corruption(*corruption)

        def transform(index, example):
            image, label = example
            image = eval_image(image, size, fraction)
            if corruption is not None:
                image = corrupt_in_graph(index, image, *corruption)
            return preprocess_images(image, mode), label

        ds = self._base(split_name).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
        return self._finish(ds.batch(self.batch_size))

    @staticmethod
    def _finish(ds):
        options = tf.data.Options()
        options.deterministic = True
        # Data-level sharding: every worker reads the whole (small or
        # file-list-less) source and keeps its share of the batches.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
