"""Trained weights by name: where each file is published, its hash and its facts.

``resnet50(weights="imagenet")`` resolves the name to a registered
:class:`WeightsEntry` (as ``keras.applications``' ``weights="imagenet"``,
torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` and timm's
``pretrained=True``): the file's address, the hash its publisher gives, its
license, the top-1 the publisher reports, the preprocessing and input size
it was trained with, the builder arguments it needs (``layout``) and its
class names.  :func:`list_weights` lists them; :func:`register_weights` adds
one (an organisation's own files, a test's local server).

Files are downloaded once into keras' cache folder
(``$KERAS_HOME/models``, ``~/.keras/models`` by default), as
``keras.utils.get_file`` does, and:

- verified before use: against the publisher's hash (keras' MD5 of each
  ImageNet file; torchvision's SHA-256 prefix in the file name), or, where
  none is published, against the SHA-256 recorded at the first download
  (``xbn-hashes.json`` in the cache folder), checked at every later load;
- written atomically: the bytes go to ``NAME.part`` and are renamed into
  place only once verified; an interrupted download resumes from the
  ``.part`` file where the server supports ranges and restarts cleanly
  where it does not;
- found again offline: a verified file in the cache is never fetched again.

A hash mismatch, an unreachable host and a full disk each raise one line
that says what to do, including where to put a file downloaded by hand.
PyTorch checkpoints are converted once into a ``.weights.h5`` file beside
them, so later loads need no PyTorch.

The ImageNet class names (``decode_predictions``) ship with xbn: the
WordNet IDs in the standard sorted order (TensorFlow Datasets'
``imagenet2012/labels.txt``) and the readable names torchvision publishes
(``torchvision.models._meta``, BSD-3-Clause), which tell the two "crane"
and the two "maillot" classes apart.
"""

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from xbn import _checks, _files
from xbn.errors import UsageError

FORMATS = ("keras_h5", "torch")
HASH_ALGORITHMS = ("sha256", "md5")
HASHES_FILE = "xbn-hashes.json"
# Seconds without a byte from the server before a download is called stalled.
TIMEOUT = 60
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One published weights file of a registered model, and its facts.

    Attributes:
        model: the registered model name (``"resnet50"``).
        name: the weights name (``"imagenet"``, ``"torchvision"``, ``"timm"``).
        url: where the file is published; ``None`` for a file that can only
            be downloaded by hand (``page`` says where).
        file_name: the file's name in the cache folder.
        file_hash: the hash its publisher gives (hex; for torchvision the
            SHA-256 prefix in the file name), or ``None`` where none is
            published: the SHA-256 is then recorded at the first download.
        hash_algorithm: ``"sha256"`` or ``"md5"`` (keras' published hashes).
        format: ``"keras_h5"`` (keras' HDF5 weights, loaded by layer name)
            or ``"torch"`` (a PyTorch state dict, loaded through
            :func:`xbn.models.load_torch_weights`).
        builder_args: the builder arguments the file needs
            (``{"layout": "torchvision"}``); a name given to ``weights=`` sets
            them where the caller left the builder's default.
        preprocessing: the preprocessing mode the weights were trained with.
        input_size: the side of the images it was evaluated at.
        eval_crop: the central fraction kept at evaluation (224/256 = 0.875;
            torchvision's V2 recipes 224/232).
        interpolation: the resizing its publisher evaluates with (xbn's
            pipelines resize bilinearly, with antialiasing).
        top1, top5: ImageNet validation accuracy as the publisher reports it
            (percent), or ``None``.
        classes: the classes of its classifier (1000 for ImageNet).
        class_names: ``"imagenet"`` (shipped with xbn) or a list of names.
        source: who publishes it (``"keras.applications"``, ``"torchvision"``).
        license: the license of the weights.
        page: where the facts come from (and where to download by hand).
        notop_url, notop_file_name, notop_file_hash: a smaller file without
            the classifier, where the publisher has one (keras' ``_notop``
            files), used for ``include_top=False`` and feature backbones.
    """

    model: str
    name: str
    url: str
    file_name: str
    file_hash: str = None
    hash_algorithm: str = "sha256"
    format: str = "keras_h5"
    builder_args: dict = dataclasses.field(default_factory=dict)
    preprocessing: str = "caffe"
    input_size: int = 224
    eval_crop: float = 0.875
    interpolation: str = "bilinear"
    top1: float = None
    top5: float = None
    classes: int = 1000
    class_names: object = "imagenet"
    source: str = ""
    license: str = ""
    page: str = ""
    notop_url: str = None
    notop_file_name: str = None
    notop_file_hash: str = None

    @property
    def key(self):
        """``"MODEL/NAME"``: how a saved model records the weights it was built with."""
        return f"{self.model}/{self.name}"

    def names(self):
        """The class names of the classifier."""
        return imagenet_class_names() if self.class_names == "imagenet" else list(self.class_names)

    def file(self, include_top=True):
        """``(url, file name, hash)`` of the file a model with or without its top needs."""
        if not include_top and self.notop_file_name:
            return self.notop_url, self.notop_file_name, self.notop_file_hash
        return self.url, self.file_name, self.file_hash

    def as_dict(self):
        data = dataclasses.asdict(self)
        if self.class_names == "imagenet":
            data["class_names"] = "imagenet (1000, shipped with xbn)"
        return data


_WEIGHTS = {}
_published = False


def _entries():
    """The registered entries, the published ones registered on first use
    (once the families have registered their models)."""
    global _published
    if not _published:
        _published = True
        _register_published()
    return _WEIGHTS


def register_weights(model, name, **facts):
    """Register weights ``name`` for the registered model ``model`` (see
    :class:`WeightsEntry` for ``facts``); returns the entry.

    >>> from xbn.models import register_weights, unregister_weights
    >>> entry = register_weights("resnet20", "mine", url="https://example.org/r20.weights.h5",
    ...                          file_name="r20.weights.h5", classes=10, class_names=list("0123456789"),
    ...                          preprocessing="torch", input_size=32, eval_crop=1.0)
    >>> entry.key
    'resnet20/mine'
    >>> unregister_weights("resnet20", "mine")
    """
    from xbn.models.registry import check_arguments, model_facts

    owner = "register_weights"
    model_facts(model)  # a registered model, or the registry's error
    if not isinstance(name, str) or not name or "/" in name or os.sep in name or name.endswith((".h5", ".keras")):
        raise UsageError(f"{owner}: `name` must be a short word such as 'imagenet' (no '/', no file "
                         f"suffix); got {name!r}.")
    if (model, name) in _entries():
        raise UsageError(f"{owner}: {model} already has weights named {name!r}; unregister them first.")
    entry = WeightsEntry(model, name, **facts)
    _checks.check_choice(owner, "format", entry.format, FORMATS)
    _checks.check_choice(owner, "hash_algorithm", entry.hash_algorithm, HASH_ALGORITHMS)
    _checks.check_int(owner, "classes", entry.classes, minimum=1)
    _checks.check_int(owner, "input_size", entry.input_size, minimum=1)
    _checks.check_float(owner, "eval_crop", entry.eval_crop, minimum=0.0, maximum=1.0, min_inclusive=False)
    check_arguments(model, entry.builder_args, flag=f"{owner}: builder_args")
    if not isinstance(entry.file_name, str) or not entry.file_name or Path(entry.file_name).name != entry.file_name:
        raise UsageError(f"{owner}: `file_name` must be a plain file name; got {entry.file_name!r}.")
    if entry.class_names != "imagenet" and len(entry.names()) != entry.classes:
        raise UsageError(f"{owner}: {len(entry.names())} class names for {entry.classes} classes.")
    _entries()[model, name] = entry
    return entry


def unregister_weights(model, name):
    """Remove a registered weights entry (a test's, a plugin's)."""
    weights_entry(model, name)
    del _entries()[model, name]


def list_weights(model=None):
    """The registered weights entries, of ``model`` or of every model.

    >>> from xbn.models import list_weights
    >>> [e.name for e in list_weights("resnet50")]
    ['imagenet', 'torchvision', 'timm']
    """
    if model is not None:
        from xbn.models.registry import model_facts

        model_facts(model)
    return [e for (m, _), e in _entries().items() if model is None or m == model]


def is_weights_name(model, weights):
    """Whether ``weights`` names registered weights of ``model``."""
    return isinstance(weights, str) and (model, weights) in _entries()


def names_text(model):
    """The weights names of ``model``, for messages."""
    names = [e.name for e in list_weights(model)]
    return "its weights names: " + ", ".join(repr(n) for n in names) if names else "it has no named weights"


def weights_entry(model, name):
    """The :class:`WeightsEntry` ``name`` of the registered model ``model``."""
    if (model, name) not in _entries():
        raise UsageError(f"{model} has no weights named {name!r}; {names_text(model)} (xbn.models.list_weights).")
    return _entries()[model, name]


def entry_from_key(key):
    """The entry a saved model recorded as ``"MODEL/NAME"``, or ``None`` if it is not registered here."""
    model, _, name = (key or "").partition("/")
    return _entries().get((model, name))


def builder_arguments(entry, builder, args):
    """The builder's ``args`` with what ``entry``'s file needs: its
    ``builder_args`` where the caller left the builder's default, and
    ``classes`` checked against the file's classifier."""
    import inspect

    owner = entry.model
    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
    args = dict(args)
    for key, value in entry.builder_args.items():
        if args[key] != value and args[key] != defaults[key]:
            raise UsageError(
                f"{owner}: weights={entry.name!r} needs {key}={value!r} (the layout its file was trained in); "
                f"received {key}={args[key]!r}. Drop `{key}` or choose other weights."
            )
        args[key] = value
    if args.get("include_top") and not args.get("features_only") and args.get("classes") != entry.classes:
        raise UsageError(
            f"{owner}: weights={entry.name!r} have a {entry.classes}-class classifier; with include_top=True, "
            f"`classes` must be {entry.classes}. Received: classes={args.get('classes')}. For other classes, "
            "build with include_top=False and add a head, or fine-tune with xbn-train --weights."
        )
    return args


def weights_table():
    """The Markdown table of every registered entry (the README's)."""
    rows = ["| model | name | source | top-1 (publisher) | preprocessing | builder arguments |",
            "| --- | --- | --- | ---: | --- | --- |"]
    for entry in list_weights():
        source = entry.source.split(" (")[0] + (" (by hand)" if entry.url is None else "")
        args = ", ".join(f"{key}={value!r}" for key, value in entry.builder_args.items()) or "-"
        top1 = f"{entry.top1:.1f}" if entry.top1 else "-"
        rows.append(f"| `{entry.model}` | `{entry.name}` | {source} | {top1} | {entry.preprocessing} | {args} |")
    return "\n".join(rows)


# -- the cache ------------------------------------------------------------------------
def cache_dir():
    """keras' cache folder for model files: ``$KERAS_HOME/models`` (``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def file_digest(path, algorithm="sha256"):
    """The hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, _CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_hashes(folder):
    path = folder / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is damaged (not JSON); delete it, and the files it records are hashed again "
                         "at their next download.") from None


def _record_hash(folder, file_name, sha256):
    hashes = _recorded_hashes(folder)
    hashes[file_name] = sha256
    _files.atomic_write_text(folder / HASHES_FILE, json.dumps(hashes, indent=1, sort_keys=True))


def _expected(entry_hash, algorithm, folder, file_name):
    """``(algorithm, hex, published)``: what a file must hash to, or ``None`` if nothing is known yet."""
    if entry_hash:
        return algorithm, entry_hash.lower(), True
    recorded = _recorded_hashes(folder).get(file_name)
    return ("sha256", recorded, False) if recorded else None


def _matches(path, expected):
    algorithm, value, _ = expected
    return file_digest(path, algorithm).startswith(value)


def _by_hand(url, path, page):
    where = f" from {page}" if page else (f" from {url}" if url else "")
    return f"download it by hand{where} to {path}"


def fetch(entry, include_top=True, progress=True, log=print):
    """The path of ``entry``'s file in the cache, downloaded and verified if needed.

    Args:
        entry: a :class:`WeightsEntry`.
        include_top: False takes the publisher's file without the
            classifier where there is one.
        progress: show a progress bar while downloading.
        log: where notes go (a cached file that failed its hash).

    Raises:
        ValueError: the file does not match its hash (after a download, or
            a file put in the cache by hand).
        ConnectionError: the host cannot be reached (offline, DNS, refused,
            timed out) and the file is not in the cache.
        xbn._files.DiskFullError: the cache's disk is full.
    """
    url, file_name, file_hash = entry.file(include_top)
    folder = cache_dir()
    path = folder / file_name
    expected = _expected(file_hash, entry.hash_algorithm, folder, file_name)
    if path.is_file():
        if expected is None:  # put there by hand, or by keras: trusted once, then held to it
            _record_hash(folder, file_name, file_digest(path))
            return path
        if _matches(path, expected):
            return path
        if url is None:
            raise UsageError(
                f"{path} does not match the {expected[0]} {expected[1]} of {entry.key}: it is not the file "
                f"published{' by ' + entry.source if entry.source else ''}. Delete it and "
                f"{_by_hand(url, path, entry.page)}."
            )
        log(f"xbn: {path} does not match its {expected[0]} hash; downloading it again.")
        path.unlink()
    if url is None:
        raise FileNotFoundError(
            f"the weights {entry.key} are not downloaded automatically: {_by_hand(url, path, entry.page)}, "
            "then ask for them again."
        )
    _download(url, path, entry, progress)
    if expected is None:
        _record_hash(folder, file_name, file_digest(path))
    elif not _matches(path, expected):
        got = file_digest(path, expected[0])
        path.unlink()
        what = "its publisher's" if expected[2] else "the one recorded at its first download"
        raise UsageError(
            f"the download of {entry.key} from {url} has {expected[0]} {got}, not {what} {expected[1]}: the file "
            f"was damaged on the way or changed where it is published; nothing was kept. Try again, or "
            f"{_by_hand(url, path, entry.page)} and check its hash."
        )
    return path


def _download(url, path, entry, progress):
    """Download ``url`` to ``path`` through ``path.part``, resuming a partial
    file where the server takes ranges, renamed into place when complete."""
    from xbn._progress import Progress

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    advice = f"Free some space and ask again (the download resumes), or {_by_hand(url, path, entry.page)}."
    try:
        with contextlib.ExitStack() as stack:
            try:
                response = stack.enter_context(urllib.request.urlopen(request, timeout=TIMEOUT))
            except urllib.error.HTTPError as error:
                if error.code != 416 or not done:  # 416: the range starts at the end: the .part is whole
                    raise
                os.replace(part, path)
                return
            resumed = done and response.status == 206
            if not resumed:
                done = 0  # the server sent the whole file: start the .part again
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            if total is not None:
                _files.ensure_space(path.parent, total - done, f"the weights {entry.key}", advice)
            bar = Progress(total and -(-total // _CHUNK), f"downloading {path.name} (MB)", enabled=progress)
            with _files.disk_full_errors(path.parent, f"downloading {entry.key}", total, advice):
                with open(part, "ab" if resumed else "wb") as handle:
                    for block in iter(functools.partial(response.read, _CHUNK), b""):
                        handle.write(block)
                        done += len(block)
                        bar.update(done // _CHUNK)
                    handle.flush()
                    os.fsync(handle.fileno())
            bar.finish()
            if total is not None and done != total:
                raise ConnectionError(
                    f"the download of {entry.key} from {url} ended after {done:,} of {total:,} bytes; ask again "
                    f"to resume it, or {_by_hand(url, path, entry.page)}."
                )
        os.replace(part, path)
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as error:
        if isinstance(error, _files.DiskFullError) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise
        if isinstance(error, ConnectionError) and str(error).startswith("the download of"):
            raise
        reason = getattr(error, "reason", None) or error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        kept = f" ({part.stat().st_size:,} bytes kept to resume)" if part.is_file() and part.stat().st_size else ""
        raise ConnectionError(
            f"cannot download the weights {entry.key} from {url}: {reason}{kept}. Check the network and ask "
            f"again, or {_by_hand(url, path, entry.page)}."
        ) from None


# -- loading ----------------------------------------------------------------------------
def converted_path(entry, source, include_top):
    """Where a PyTorch file's weights are kept once converted (beside it, named by its hash)."""
    top = "" if include_top else "-notop"
    return source.with_name(f"{Path(entry.file_name).stem}.{file_digest(source)[:12]}.{entry.model}{top}.weights.h5")


def load(model, entry, include_top=True, progress=True, log=print):
    """Fetch ``entry``'s file and load it into ``model`` (built with the
    entry's builder arguments); returns the load's report."""
    from xbn.models.weights import load_weights

    source = fetch(entry, include_top, progress, log)
    if entry.format == "keras_h5":
        return load_weights(model, source)
    converted = converted_path(entry, source, include_top)
    if converted.is_file():
        return load_weights(model, converted)
    from xbn.models.torch_weights import CLASSIFIERS, load_torch_weights, read_torch_state

    state = read_torch_state(source)
    if not include_top:
        heads = tuple(name.rsplit(".", 1)[0] + "." for name in CLASSIFIERS)
        state = {k: v for k, v in state.items() if not k.startswith(heads)}
    report = load_torch_weights(model, state)
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a conversion next time
        with _files.atomic_path(converted) as tmp:
            model.save_weights(tmp)
    return report


# -- ImageNet class names -------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _imagenet_classes():
    text = (Path(__file__).with_name("data") / "imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line]
    return tuple(r[0] for r in rows), tuple(r[1] for r in rows)


def imagenet_class_names():
    """The 1000 ImageNet class names in the classifier's order (``"tench"``, ...)."""
    return list(_imagenet_classes()[1])


def decode_predictions(predictions, top=5, class_names=None):
    """The ``top`` classes of each row of ``predictions``, as
    ``keras.applications``' ``decode_predictions``: a list per image of
    ``(class id, class name, score)``, best first.

    Args:
        predictions: ``(batch, classes)`` scores (probabilities or logits).
        top: how many classes per image.
        class_names: one name per class; default ImageNet's (with their
            WordNet IDs as class ids), for 1000-class predictions.

    >>> import numpy as np
    >>> from xbn.models import decode_predictions
    >>> scores = np.zeros((1, 1000)); scores[0, 1] = 0.9
    >>> decode_predictions(scores, top=1)
    [[('n01443537', 'goldfish', 0.9)]]
    """
    import numpy as np

    scores = np.asarray(predictions)
    if scores.ndim != 2:
        raise UsageError(f"decode_predictions: `predictions` must be (batch, classes); got shape {scores.shape}.")
    if class_names is None:
        if scores.shape[1] != 1000:
            raise UsageError(
                f"decode_predictions: predictions of {scores.shape[1]} classes need `class_names` (the "
                "ImageNet names cover 1000)."
            )
        ids, class_names = _imagenet_classes()
    else:
        class_names = list(class_names)
        if len(class_names) != scores.shape[1]:
            raise UsageError(f"decode_predictions: {len(class_names)} class names for {scores.shape[1]} classes.")
        ids = [str(i) for i in range(len(class_names))]
    top = _checks.check_int("decode_predictions", "top", top, minimum=1, maximum=scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [[(ids[i], class_names[i], float(row[i])) for i in picks] for row, picks in zip(scores, order)]


# -- the published files -----------------------------------------------------------------------
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS_PAGE = "https://keras.io/api/applications/"
_TORCHVISION = "https://download.pytorch.org/models/"
_TORCHVISION_PAGE = "https://docs.pytorch.org/vision/stable/models.html"


def _keras_resnet(model, top1, top5, top_md5, notop_md5):
    stem = f"{model}_weights_tf_dim_ordering_tf_kernels"
    register_weights(
        model, "imagenet", url=f"{_KERAS}resnet/{stem}.h5", file_name=f"{stem}.h5", file_hash=top_md5,
        hash_algorithm="md5", builder_args={"layout": "keras"}, preprocessing="caffe", top1=top1, top5=top5,
        source="keras.applications", license="MIT (keras.applications' ResNet weights, from Kaiming He's "
        "Caffe models)", page=_KERAS_PAGE, notop_url=f"{_KERAS}resnet/{stem}_notop.h5",
        notop_file_name=f"{stem}_notop.h5", notop_file_hash=notop_md5,
    )


def _torchvision(model, file_name, top1, top5, v2=False, **builder_args):
    """torchvision's file ``file_name`` (its SHA-256 prefix after the last ``-``)."""
    register_weights(
        model, "torchvision", url=_TORCHVISION + file_name, file_name=file_name,
        file_hash=file_name.rsplit("-", 1)[1].split(".")[0], format="torch", builder_args=builder_args,
        preprocessing="torch", eval_crop=224 / 232 if v2 else 0.875, top1=top1, top5=top5,
        source="torchvision", license="BSD-3-Clause (torchvision)", page=_TORCHVISION_PAGE,
    )


def _register_published():
    # keras.applications (keras-team/keras, applications/resnet.py and
    # mobilenet_v2.py; top-1/top-5 from keras.io/api/applications).
    _keras_resnet("resnet50", 74.9, 92.1, "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626")
    _keras_resnet("resnet101", 76.4, 92.8, "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21")
    _keras_resnet("resnet152", 76.6, 93.1, "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c")
    stem = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224"
    register_weights(
        "mobilenetv2", "imagenet", url=f"{_KERAS}mobilenet_v2/{stem}.h5", file_name=f"{stem}.h5",
        builder_args={"alpha": 1.0, "layout": "keras"}, preprocessing="tf", top1=71.3, top5=90.1,
        source="keras.applications", license="Apache-2.0 (keras.applications)", page=_KERAS_PAGE,
        notop_url=f"{_KERAS}mobilenet_v2/{stem}_no_top.h5", notop_file_name=f"{stem}_no_top.h5",
    )
    # torchvision (torchvision/models/*.py: each name carries its SHA-256
    # prefix; the best ImageNet-1k recipe of each model, acc@1/acc@5).
    _torchvision("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078)
    _torchvision("resnet34", "resnet34-b627a593.pth", 73.314, 91.420)
    _torchvision("resnet50", "resnet50-11ad3fa6.pth", 80.858, 95.434, v2=True, layout="torchvision")
    _torchvision("resnet101", "resnet101-cd907fc2.pth", 81.886, 95.780, v2=True, layout="torchvision")
    _torchvision("resnet152", "resnet152-f82ba261.pth", 82.284, 96.002, v2=True, layout="torchvision")
    _torchvision("resnext50_32x4d", "resnext50_32x4d-1a0047aa.pth", 81.198, 95.340, v2=True)
    _torchvision("resnext101_32x8d", "resnext101_32x8d-110c445d.pth", 82.834, 96.228, v2=True)
    _torchvision("mobilenetv2", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822, v2=True, layout="torchvision")
    # ShuffleNetV2 1.0x; the other widths' files are shufflenetv2_x0.5-f707e7126e.pth,
    # shufflenetv2_x1_5-3c479a10.pth and shufflenetv2_x2_0-8be3c8ee.pth
    # (register them with alpha= in builder_args).
    _torchvision("shufflenetv2", "shufflenetv2_x1-5666bf0f80.pth", 69.362, 88.316, alpha=1.0, layout="torchvision")
    # timm: an ImageNet-trained GroupNorm ResNet-50 (resnet50_gn.a1h_in1k,
    # timm's resnet.py and results-imagenet.csv at 224 pixels, crop 0.94,
    # bicubic), torchvision's module names with a GroupNorm at every
    # BatchNorm's place.
    register_weights(
        "resnet50", "timm", url="https://github.com/rwightman/pytorch-image-models/releases/download/"
        "v0.1-rsb-weights/resnet50_gn_a1h2-8fe6c4d0.pth", file_name="resnet50_gn_a1h2-8fe6c4d0.pth",
        file_hash="8fe6c4d0", format="torch",
        builder_args={"layout": "torchvision", "bn_kind": "gn", "bn_options": {"groups": 32}},
        preprocessing="torch", eval_crop=0.94, interpolation="bicubic", top1=80.074, top5=94.958, source="timm",
        license="Apache-2.0 (timm)", page="https://huggingface.co/timm/resnet50_gn.a1h_in1k",
    )
    # The XBNBlock authors' checkpoints (github.com/huangleiBuaa/XBNBlock,
    # readme "Pre-trained models"): on Google Drive, downloaded by hand.
    drive = "https://drive.google.com/file/d/{}/view"
    for model, name, file_id in (
        ("resnet50_xbn", "xbnblock", "1xqGsCDD4Y_rv6PjTtACAs8D918fjUT55"),
        ("resnet50_xbn", "xbnblock_advanced", "1pHRhjc67M5wki5fWy44SG5lj06q71gat"),
        ("resnext50_32x4d_xbn", "xbnblock_advanced", "1MKQ4iAOnKGWmDwN7lfzFJqGmTqL823NJ"),
    ):
        register_weights(
            model, name, url=None, file_name=f"{model}-{name}.pth", format="torch",
            builder_args={"layout": "torchvision"} if model == "resnet50_xbn" else {},
            preprocessing="torch", source="the XBNBlock authors (Huang et al., CVPR 2022)",
            license="BSD-2-Clause (the XBNBlock repository)", page=drive.format(file_id),
        )


