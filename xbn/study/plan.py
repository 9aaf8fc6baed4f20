"""What the study trains: forms, batch sizes, seeds and the schedule.

A :class:`Form` is one normalization design of one network (a registered
model plus builder arguments: ``resnet20`` with ``bn_kind="brn"`` is the
batch-renormalization form).  A :class:`Plan` crosses forms with batch
sizes and seeds, and names the runs whose shift is drawn against depth and
those scored on corrupted images.  :func:`study_plan` gives the published
plan, or with ``quick=True`` the small one the tests run (``xbn-study --quick``).

The schedule holds **epochs** equal across batch sizes (Wu & He, 2018, do
the same): every run sees every training image ``epochs`` times, so a run
at batch 2 takes 32 times the steps of one at batch 64, with the learning
rate scaled linearly, ``lr_at_64 * batch / 64`` (Goyal et al., 2017), and
one epoch of linear warm-up.  Every result row records both its epochs and
its steps.
"""

import dataclasses

# The CIFAR-style ResNets' learning rate at batch 64, scaled linearly with
# the batch; 8 epochs of it take resnet20 to 97.8%-98.3% on the digits' test
# split at batch 64 (pilot runs, seed 0).
LR_AT_64 = 0.1


# Batch renormalization (Ioffe, 2017) with the paper's final clipping (r in
# [1/3, 3], |d| <= 5) from the first step, and moving averages as fast as BN's
# (momentum 0.9).  Ioffe relaxes the clipping from plain BN over the first
# thousands of steps; xbn's BatchNorm clips with constants, and without the
# ramp the study's short schedule does not train at its larger learning rates
# (pilot, resnet20, 3 epochs: 30% test top-1 at batch 32, lr 0.05; 16% after
# 8 epochs at batch 64; 91% at batch 16).  So the row stops at batch 16, the
# small-batch regime batch renormalization is for.
BRN_ARGS = (("bn_kind", "brn"), ("bn_options", {"renorm_clipping": {"rmax": 3.0, "rmin": 1 / 3, "dmax": 5.0},
                                                "renorm_momentum": 0.9}))
BRN_MAX_BATCH = 16


@dataclasses.dataclass(frozen=True)
class Form:
    """One normalization design: a registered model and builder arguments.

    Attributes:
        label: the name rows and tables use (``resnet20_brn``).
        model: the registered model (``resnet20``).
        model_args: builder arguments as ``(key, value)`` pairs
            (``(("bn_kind", "brn"), ...)``; :attr:`args` is the dict).
        norm: which design it is: ``bn``, ``xbn``, ``gnws`` or ``brn``.
        max_batch: the largest batch size it is trained at (``None``: all).
    """

    label: str
    model: str
    norm: str
    model_args: tuple = ()
    max_batch: int = None

    @property
    def args(self):
        return dict(self.model_args)


def forms_of(base, brn=True):
    """The vanilla, XBN and GN+WS forms of ``base`` (and BN with batch renormalization)."""
    forms = [Form(base, base, "bn"), Form(f"{base}_xbn", f"{base}_xbn", "xbn"),
             Form(f"{base}_gnws", f"{base}_gnws", "gnws")]
    if brn:
        forms.append(Form(f"{base}_brn", base, "brn", BRN_ARGS, max_batch=BRN_MAX_BATCH))
    return tuple(forms)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run: a form at a batch size with a seed, and what to measure on it."""

    form: Form
    batch_size: int
    seed: int
    corruption: tuple = ()  # (name, severity) pairs scored on the trained model

    @property
    def name(self):
        return f"{self.form.label}-bs{self.batch_size}-s{self.seed}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The runs of a study and their shared schedule.

    Attributes:
        sweep: forms trained at every batch size of ``batch_sizes``.
        batch_sizes: the batch sizes of the sweep (each >= 2).
        depth: deeper forms trained at ``depth_batch_sizes`` only, for the
            depth figure (H1).
        depth_batch_sizes: a small batch and a normal one (for ResNet-56
            16, not 64: at batch 64 its 152 steps at lr 0.1 do not train the
            vanilla network, 28% test top-1 in a first attempt, and the
            comparison is meant between trained networks).
        seeds: the seeds of every cell.
        epochs: epochs of every run (held equal across batch sizes).
        normal_batch: the batch at which XBN is compared with BN (H3) and
            the corruption benchmark runs (H4).
        corruptions: ``(name, severity)`` pairs scored at ``normal_batch``.
        steps_per_epoch: a cap on the steps of an epoch (``None``: all);
            only the quick plan uses one.
        image_size, data: the input side and the data.
        precise_bn_batches: batches of the training split precise BN pools.
    """

    sweep: tuple
    batch_sizes: tuple
    depth: tuple
    depth_batch_sizes: tuple
    seeds: tuple
    epochs: int
    normal_batch: int
    corruptions: tuple
    steps_per_epoch: int = None
    image_size: int = 32
    data: str = "digits"
    precise_bn_batches: int = 20
    lr_at_64: float = LR_AT_64

    def __post_init__(self):
        sizes = (*self.batch_sizes, *self.depth_batch_sizes)
        if not self.batch_sizes or any(not isinstance(b, int) or b < 2 for b in sizes):
            raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples); got {sizes}.")
        if len(set(self.seeds)) < 2:
            raise ValueError(f"a study needs at least 2 seeds per cell for a spread; got {self.seeds}.")
        if self.normal_batch not in self.batch_sizes:
            raise ValueError(f"the normal batch {self.normal_batch} is not among the batch sizes {self.batch_sizes}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}.")
        from xbn.models import list_models

        known = set(list_models())
        missing = list(dict.fromkeys(f.model for f in (*self.sweep, *self.depth) if f.model not in known))
        if missing:
            raise ValueError(
                f"unknown models {', '.join(missing)}; the study needs a registered network with _xbn and "
                "_gnws forms, e.g. resnet20 (xbn.models.list_models())."
            )

    def lr(self, batch_size):
        """The peak learning rate at ``batch_size`` (linear scaling)."""
        return self.lr_at_64 * batch_size / 64

    def cells(self):
        """Every run, the cheapest first within each seed (early rows sooner)."""
        cells = []
        for seed in self.seeds:
            for batch in sorted(self.batch_sizes, reverse=True):
                for form in self.sweep:
                    if form.max_batch is not None and batch > form.max_batch:
                        continue
                    scored = self.corruptions if batch == self.normal_batch and form.norm != "brn" else ()
                    cells.append(Cell(form, batch, seed, scored))
            for batch in sorted(self.depth_batch_sizes, reverse=True):
                for form in self.depth:
                    cells.append(Cell(form, batch, seed))
        return cells

    def describe(self):
        """A JSON-ready description of the plan (stored beside the results)."""
        return {
            "sweep": [f.label for f in self.sweep], "batch_sizes": list(self.batch_sizes),
            "depth": [f.label for f in self.depth], "depth_batch_sizes": list(self.depth_batch_sizes),
            "seeds": list(self.seeds), "epochs": self.epochs, "normal_batch": self.normal_batch,
            "lr": f"{self.lr_at_64:g} x batch / 64", "warmup_epochs": 1, "image_size": self.image_size,
            "data": self.data, "steps_per_epoch": self.steps_per_epoch,
            "precise_bn_batches": self.precise_bn_batches,
            "corruptions": sorted({name for name, _ in self.corruptions}),
        }


def _all_corruptions():
    from xbn.data.corruptions import CORRUPTIONS

    return tuple((name, severity) for name in CORRUPTIONS for severity in range(1, 6))


def study_plan(quick=False, sweep="resnet20", depth="resnet56", seeds=None):
    """The published plan, or with ``quick`` the small one the tests run."""
    if quick:
        return Plan(
            sweep=forms_of(sweep), batch_sizes=(4, 16), depth=(), depth_batch_sizes=(),
            seeds=tuple(seeds or (0, 1)), epochs=1, normal_batch=16, steps_per_epoch=3,
            corruptions=(("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 3)),
            precise_bn_batches=2,
        )
    return Plan(
        sweep=forms_of(sweep), batch_sizes=(2, 4, 8, 16, 32, 64),
        depth=forms_of(depth, brn=False)[:2], depth_batch_sizes=(4, 16),
        seeds=tuple(seeds or (0, 1, 2)), epochs=8, normal_batch=64, corruptions=_all_corruptions(),
    )
