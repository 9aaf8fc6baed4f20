"""What the study trains: forms, batch sizes, seeds, learning rates and the schedule.

A :class:`Form` is one normalization design of one network (a registered
model plus builder arguments: ``resnet20`` with ``bn_kind="brn"`` is the
batch-renormalization form).  A :class:`Plan` crosses forms with batch
sizes and seeds, and names the runs whose shift is drawn against depth and
those scored on corrupted images.  :func:`study_plan` gives the published
plan, or with ``quick=True`` the small one the tests run (``xbn-study --quick``).

Three kinds of run (:attr:`Cell.purpose`):

- ``tuning``: on a held-out seed (:data:`TUNING_SEED`), every form at the
  smallest and the normal batch (:attr:`Plan.tune_batches`) with the
  learning rate at each of :data:`LR_SCALES` times the linear rule, scored
  on the **validation** split; the best scale of each (form, batch) is the
  one the study runs with, and the batches between take the scale
  interpolated in log(batch) and log(scale), rounded to the nearest tried
  (the depth network takes the scale of the sweep's form with the same
  norm).  Tuning every batch size would have cost as much as three more
  seeds of the whole study;
- ``study``: the cells the hypotheses are tested on;
- ``convergence``: the normal-batch cells again at other multiples of their
  epochs (:attr:`Plan.convergence_factors`; twice by default): the
  reference is converged when doubling the epochs changes test top-1 by
  less than :data:`CONVERGED_POINTS`.  Half the epochs as well says what a
  reference that twice leaves lower is: one still rising into its epochs
  and past its best after them sits near its peak; more multiples for one
  norm's forms (:attr:`Plan.form_convergence_factors`) follow its curve
  further (every doubling is paired by seed).

The schedule holds **epochs** equal across batch sizes (Wu & He, 2018, do
the same): every run sees every training image ``epochs`` times, so a run
at batch 2 takes 32 times the steps of one at batch 64.  Equal steps would
give the small batches a thirty-second of the data, a second difference
besides the statistics; equal epochs give them more updates, so the small
batches are never the less trained.  The one exception is
:attr:`Plan.normal_epochs`: the normal batch's runs, which take the fewest
steps of all, can be given more epochs until they converge (issue 21: the
reference must be converged, and doubling 10 epochs at batch 64 still moved
top-1 by a point), and :attr:`Plan.form_normal_epochs` gives a form its own
(where its curve peaks elsewhere; the published study checked GN+WS at 20
and kept 40, its peak).  One epoch of linear warm-up, then cosine decay; every
result row records both its epochs and its steps.
"""

import dataclasses
import math

from xbn.errors import UsageError

# The CIFAR-style ResNets' learning rate at batch 64, scaled linearly with
# the batch (Goyal et al., 2017) and then by the tuned scale.
LR_AT_64 = 0.1
# The scales of the linear rule tried per form and batch (issue 21), and
# the held-out seed they are tried on.
LR_SCALES = (0.5, 1.0, 2.0)
TUNING_SEED = 100
# A reference is converged when doubling its epochs moves test top-1 by less.
CONVERGED_POINTS = 0.3

# Batch renormalization (Ioffe, 2017) with the paper's final clipping (r in
# [1/3, 3], |d| <= 5), relaxed from plain BN over training as Ioffe does
# (his rmax ramp ends at 31% of his steps, dmax's at 19%: here after 40% and
# 25%, starting after the warm-up epoch; :func:`brn_ramp`), and moving
# averages as fast as BN's (momentum 0.9).  Without the ramp the constant
# clipping did not train at batch 32-64 in the first study (16% top-1).
BRN_ARGS = (("bn_kind", "brn"), ("bn_options", {"renorm_clipping": {"rmax": 3.0, "rmin": 1 / 3, "dmax": 5.0},
                                                "renorm_momentum": 0.9}))


def brn_ramp(steps, warmup_steps):
    """Ioffe's schedule for a run of ``steps`` steps: ``renorm_ramp``."""
    return {"rmax": (warmup_steps, max(warmup_steps, round(0.4 * steps))),
            "dmax": (warmup_steps, max(warmup_steps, round(0.25 * steps)))}


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
        forms.append(Form(f"{base}_brn", base, "brn", BRN_ARGS))
    return tuple(forms)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run: a form at a batch size with a seed, and what to measure on it.

    Attributes:
        lr_scale: the multiple of the linear rule's learning rate.
        epochs: this run's epochs where they are not the plan's
            (the convergence runs).
        purpose: ``"study"``, ``"tuning"`` or ``"convergence"`` (module docstring).
        named_epochs: whether the folder name says the epochs: a run at
            its form's own normal epochs (:attr:`Plan.form_normal_epochs`),
            which must not take the folder of the plan's.
    """

    form: Form
    batch_size: int
    seed: int
    corruption: tuple = ()  # (name, severity) pairs scored on the trained model
    lr_scale: float = 1.0
    epochs: int = None
    purpose: str = "study"
    named_epochs: bool = False

    @property
    def name(self):
        """The run's folder name: form, batch and seed, then the learning-rate
        scale where it is not the linear rule's own (a tuning run always
        says it) and the epochs of a convergence run or of a form's own
        normal epochs.  A study tuned after
        it first ran untuned so keeps every scale-1 run and trains only the
        cells whose tuned scale differs, in the same ``--out`` folder."""
        name = f"{self.form.label}-bs{self.batch_size}-s{self.seed}"
        if self.purpose == "tuning" or self.lr_scale != 1.0:
            name += f"-lr{self.lr_scale:g}"
        if self.purpose == "convergence" or self.named_epochs:
            name += f"-e{self.epochs}"
        return name


@dataclasses.dataclass(frozen=True)
class Plan:
    """The runs of a study and their shared schedule.

    Attributes:
        sweep: forms trained at every batch size of ``batch_sizes``.
        batch_sizes: the batch sizes of the sweep (each >= 2).
        depth: deeper forms (vanilla and XBN) trained at ``depth_batch_sizes``,
            for the depth figure (H1).
        depth_batch_sizes: their batch sizes (by default 8 and 64:
            ResNet-56 at batch 2 costs 2.8 times ResNet-20's most expensive
            cells).
        seeds: the seeds of every study cell.
        epochs: epochs of every run (held equal across batch sizes, but
            see ``normal_epochs``).
        normal_epochs: epochs of the runs at ``normal_batch`` where they
            differ from ``epochs`` (``None``: the same): the references are
            the runs with the fewest steps, and this trains them until
            converged without paying for more epochs at the small batches.
        form_normal_epochs: ``(norm, epochs)`` pairs: the normal batch's
            epochs of the forms of that norm (``gnws``: every GN+WS form)
            where they differ from ``normal_epochs``; their runs' folders
            say the epochs.
        normal_batch: the batch at which XBN is compared with BN (H3), the
            corruption benchmark runs (H4) and convergence is checked.
        corruptions: ``(name, severity)`` pairs scored at ``normal_batch``.
        tune: whether the learning rate is tuned (``tuning`` runs) or
            the linear rule used as it is.
        tune_batches: the batch sizes tuned (default the smallest and the
            normal one); the others interpolate (:meth:`scale`).
        steps_per_epoch: a cap on the steps of an epoch (``None``: all);
            only the quick plan uses one.
        image_size, data: the input side and the data.
        shift_data: the other data the trained models are scored on (the
            plain digits: a distribution shift, H4), or ``None``.
        precise_bn_batches: batches of the training split precise BN pools.
        convergence_seeds: the seeds whose normal-batch cells are trained
            again at other epochs (``None``: every seed).
        convergence_factors: the multiples of a reference's epochs its
            convergence runs train for (``(2,)``: twice; ``(0.5, 2)``:
            half and twice).
        form_convergence_factors: ``(norm, factors)`` pairs: more multiples
            for the forms of that norm alone (``("gnws", (4,))``: GN+WS's
            reference, lower with twice its epochs, doubled once more).
        data_args: options of the data source as ``(key, value)`` pairs
            (the quick plan renders each digit once: a sixth of the test
            images to score).
        depth_seeds: the seeds the deeper forms are trained with (``None``:
            every seed); ResNet-56 costs 2.8 times ResNet-20 per run, so a
            study can add its seeds over several sessions.
    """

    sweep: tuple
    batch_sizes: tuple
    depth: tuple
    depth_batch_sizes: tuple
    seeds: tuple
    epochs: int
    normal_batch: int
    corruptions: tuple
    tune: bool = True
    tune_batches: tuple = None
    steps_per_epoch: int = None
    image_size: int = 16
    data: str = "digits_m"
    shift_data: str = "digits"
    precise_bn_batches: int = 20
    lr_at_64: float = LR_AT_64
    convergence_seeds: tuple = None
    data_args: tuple = ()
    normal_epochs: int = None
    depth_seeds: tuple = None
    form_normal_epochs: tuple = ()
    convergence_factors: tuple = (2,)
    form_convergence_factors: tuple = ()

    def __post_init__(self):
        sizes = (*self.batch_sizes, *self.depth_batch_sizes)
        if not self.batch_sizes or any(not isinstance(b, int) or b < 2 for b in sizes):
            raise UsageError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples); got {sizes}.")
        if len(set(self.seeds)) < 2:
            raise UsageError(f"a study needs at least 2 seeds per cell for a spread; got {self.seeds}.")
        if TUNING_SEED in self.seeds:
            raise UsageError(f"seed {TUNING_SEED} is held out for tuning the learning rate; choose other seeds.")
        if self.normal_batch not in self.batch_sizes:
            raise UsageError(f"the normal batch {self.normal_batch} is not among the batch sizes {self.batch_sizes}.")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1; got {self.epochs}.")
        if self.normal_epochs is not None and self.normal_epochs < self.epochs:
            raise UsageError(f"`normal_epochs` must be >= `epochs` ({self.epochs}): the normal batch takes the "
                             f"fewest steps per epoch; got {self.normal_epochs}.")
        _check_norms("`form_normal_epochs`", self.form_normal_epochs, (*self.sweep, *self.depth))
        for norm, epochs in self.form_normal_epochs:
            if not isinstance(epochs, int) or epochs < self.epochs:
                raise UsageError(f"`form_normal_epochs` {norm}: {norm}'s epochs must be an integer >= `epochs` "
                                 f"({self.epochs}); got {epochs!r}.")
        for factor in self.convergence_factors:
            self._check_factor(factor, self.sweep)
        _check_norms("`form_convergence_factors`", self.form_convergence_factors, self.sweep)
        for norm, factors in self.form_convergence_factors:
            for factor in factors:
                if factor in self.convergence_factors:
                    raise UsageError(f"`form_convergence_factors` {norm}={factor:g} is among the plan's factors "
                                     f"({', '.join(f'{f:g}' for f in sorted(self.convergence_factors))}) already; "
                                     "leave it out.")
                self._check_factor(factor, [f for f in self.sweep if f.norm == norm])
        if 2 not in self.convergence_factors:
            raise UsageError(f"convergence factors {self.convergence_factors} must include 2: doubling the epochs "
                             "is the test of convergence.")
        if self.convergence_seeds is not None and not set(self.convergence_seeds) <= set(self.seeds):
            raise UsageError(f"convergence_seeds {self.convergence_seeds} must be among the seeds {self.seeds}.")
        if self.depth_seeds is not None and (not set(self.depth_seeds) <= set(self.seeds)
                                             or len(set(self.depth_seeds)) < 2):
            raise UsageError(f"depth_seeds {self.depth_seeds} must be at least 2 of the seeds {self.seeds} (a "
                             "spread needs 2).")
        from xbn.models import list_models

        known = set(list_models())
        missing = list(dict.fromkeys(f.model for f in (*self.sweep, *self.depth) if f.model not in known))
        if missing:
            raise UsageError(
                f"unknown models {', '.join(missing)}; the study needs a registered network with _xbn and "
                "_gnws forms, e.g. resnet20 (xbn.models.list_models())."
            )

    def _check_factor(self, factor, forms):
        """Refuse a convergence factor that is not positive, is 1, or gives
        a reference of ``forms`` (at its own normal epochs) no whole number
        of epochs."""
        epochs = [factor * self.epochs_at(self.normal_batch, f) for f in forms]
        if (not math.isfinite(factor) or factor <= 0 or factor == 1
                or any(e < 1 or abs(e - round(e)) > 1e-9 for e in epochs)):
            raise UsageError(f"convergence factor {factor:g} must be positive, not 1, and give whole epochs of "
                             f"at least 1 for every reference (it gives {', '.join(f'{e:g}' for e in epochs)}).")

    def factors_of(self, form):
        """The multiples of ``form``'s reference epochs its convergence runs
        train for (:attr:`convergence_factors` and its norm's own)."""
        return tuple(sorted({*self.convergence_factors, *dict(self.form_convergence_factors).get(form.norm, ())}))

    def epochs_at(self, batch_size, form=None):
        """The epochs of a run at ``batch_size`` (at the normal batch
        ``normal_epochs``, or ``form``'s own :attr:`form_normal_epochs`)."""
        if batch_size != self.normal_batch:
            return self.epochs
        if self._has_own_epochs(form, batch_size):
            return dict(self.form_normal_epochs)[form.norm]
        return self.normal_epochs or self.epochs

    @property
    def own_normal_epochs(self):
        """``{norm: epochs}`` of the norms whose normal-batch epochs differ
        from the plan's (:attr:`form_normal_epochs` less those equal to it)."""
        return {norm: epochs for norm, epochs in self.form_normal_epochs
                if epochs != (self.normal_epochs or self.epochs)}

    def _has_own_epochs(self, form, batch_size):
        """Whether ``form`` trains at ``batch_size`` for epochs of its own,
        not the plan's (:attr:`form_normal_epochs`)."""
        return form is not None and batch_size == self.normal_batch and form.norm in self.own_normal_epochs

    def _cell(self, form, batch_size, seed, **kwargs):
        """A study or tuning run of ``form`` at ``batch_size``: its epochs,
        and whether its folder name says them."""
        epochs = self.epochs_at(batch_size, form)
        return Cell(form, batch_size, seed, epochs=None if epochs == self.epochs else epochs,
                    named_epochs=self._has_own_epochs(form, batch_size), **kwargs)

    def lr(self, batch_size, scale=1.0):
        """The peak learning rate at ``batch_size``: the linear rule times ``scale``."""
        return self.lr_at_64 * batch_size / 64 * scale

    @property
    def tuned_batches(self):
        return tuple(self.tune_batches or sorted({min(self.batch_sizes), self.normal_batch}))

    def tuning_cells(self):
        """The held-out-seed runs that pick each (form, batch)'s learning rate."""
        if not self.tune:
            return []
        return [self._cell(form, batch, TUNING_SEED, lr_scale=scale, purpose="tuning")
                for batch in sorted(self.tuned_batches, reverse=True) for form in self.sweep
                for scale in LR_SCALES]

    def scale(self, scales, form, batch):
        """The learning-rate scale of ``form`` at ``batch``: the tuned one,
        or between tuned batches the log-log interpolation rounded to the
        nearest of :data:`LR_SCALES` (1 where nothing was tuned)."""
        import math

        label = self.tuned_form(form).label
        if (label, batch) in scales:
            return scales[label, batch]
        known = sorted(b for (m, b) in scales if m == label)
        if not known:
            return 1.0
        below = max((b for b in known if b < batch), default=known[0])
        above = min((b for b in known if b > batch), default=known[-1])
        t = 0.0 if above == below else math.log(batch / below) / math.log(above / below)
        value = (1 - t) * math.log(scales[label, below]) + t * math.log(scales[label, above])
        return min(LR_SCALES, key=lambda s: abs(math.log(s) - value))

    def tuned_form(self, form):
        """The sweep form whose tuned learning rate ``form`` takes (itself,
        or for a depth form the sweep's form of the same norm)."""
        if form in self.sweep:
            return form
        return next(f for f in self.sweep if f.norm == form.norm)

    def cells(self, scales=None):
        """Every study and convergence run, seed by seed, the cheapest first
        within each seed (early rows sooner).

        Args:
            scales: ``{(sweep label, batch): lr scale}`` from the tuning runs
                (:func:`xbn.study.runner.chosen_scales`); missing pairs take 1.
        """
        scales = scales or {}

        def scale(form, batch):
            return self.scale(scales, form, batch)

        converged = self.seeds if self.convergence_seeds is None else self.convergence_seeds
        cells = []
        for seed in self.seeds:
            for batch in sorted(self.batch_sizes, reverse=True):
                for form in self.sweep:
                    scored = self.corruptions if batch == self.normal_batch and form.norm != "brn" else ()
                    cells.append(self._cell(form, batch, seed, corruption=scored, lr_scale=scale(form, batch)))
            deep = self.depth if self.depth_seeds is None or seed in self.depth_seeds else ()
            for batch in sorted(self.depth_batch_sizes, reverse=True):
                for form in deep:
                    cells.append(self._cell(form, batch, seed, lr_scale=scale(form, batch)))
            # A seed's convergence runs follow its study runs, so that an
            # interrupted study has whole seeds, each with its check.
            if seed in converged and not self.steps_per_epoch:  # a capped (quick) plan has nothing to converge
                factors = sorted({factor for form in self.sweep for factor in self.factors_of(form)})
                cells += [Cell(form, self.normal_batch, seed, lr_scale=scale(form, self.normal_batch),
                               epochs=round(factor * self.epochs_at(self.normal_batch, form)), purpose="convergence")
                          for factor in factors for form in self.sweep if factor in self.factors_of(form)]
        return cells

    def describe(self):
        """A JSON-ready description of the plan (stored beside the results)."""
        return {
            "sweep": [f.label for f in self.sweep], "batch_sizes": list(self.batch_sizes),
            "depth": [f.label for f in self.depth], "depth_batch_sizes": list(self.depth_batch_sizes),
            "depth_seeds": list(self.seeds if self.depth_seeds is None else self.depth_seeds) if self.depth else [],
            "seeds": list(self.seeds), "epochs": self.epochs, "normal_batch": self.normal_batch,
            "normal_epochs": self.epochs_at(self.normal_batch),
            "form_normal_epochs": self.own_normal_epochs,
            "lr": f"{self.lr_at_64:g} x batch / 64"
                  + (" x tuned scale" if self.tune else " (the linear rule, not tuned)"),
            "lr_scales": list(LR_SCALES),
            "tuned_batches": list(self.tuned_batches) if self.tune else [],
            "tuning_seed": TUNING_SEED if self.tune else None, "converged_points": CONVERGED_POINTS,
            "warmup_epochs": 1, "image_size": self.image_size, "data": self.data, "shift_data": self.shift_data,
            "steps_per_epoch": self.steps_per_epoch, "precise_bn_batches": self.precise_bn_batches,
            "corruptions": sorted({name for name, _ in self.corruptions}),
            "severities": sorted({severity for _, severity in self.corruptions}),
            "convergence_seeds": list(self.seeds if self.convergence_seeds is None else self.convergence_seeds),
            "convergence_factors": sorted(self.convergence_factors),
            "form_convergence_factors": {norm: sorted(factors) for norm, factors in self.form_convergence_factors},
            "data_args": dict(self.data_args),
        }


def _check_norms(option, pairs, forms):
    """Refuse ``(norm, value)`` pairs that name a norm twice or one no form
    of ``forms`` has."""
    norms = {f.norm for f in forms}
    for norm, _ in pairs:
        if norm not in norms:
            raise UsageError(f"{option} names {norm!r}, a norm no form of the plan has; the plan's are "
                             f"{', '.join(sorted(norms))}.")
    if len(dict(pairs)) != len(pairs):
        raise UsageError(f"{option} names a norm twice: {pairs}.")


def _all_corruptions(severities=(1, 2, 3, 4, 5)):
    from xbn.data.corruptions import CORRUPTIONS

    return tuple((name, severity) for name in CORRUPTIONS for severity in severities)


# The published plan's size: sized to about 6 hours of a 2-core machine
# with two runs at a time (see models/study/README.md for the measured time).
SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 20


def study_plan(quick=False, sweep="resnet20", depth="resnet56", seeds=None, epochs=None, batch_sizes=None,
               tune=True, brn=True, convergence_seeds=None, severities=None, normal_epochs=None, depth_seeds=None,
               depth_batch_sizes=None, form_normal_epochs=None, convergence_factors=None,
               form_convergence_factors=None):
    """The published plan, or with ``quick`` the small one the tests run.

    Args:
        quick: the tests' plan (2 batch sizes, 3 steps per epoch); it takes
            the seeds, epochs, sweep network and normal epochs, and refuses
            the options it has no use for.
        sweep: the network of the batch-size sweep (its forms: :func:`forms_of`).
        depth: the deeper network of the depth figure, or ``None`` for none.
        seeds, epochs: the plan's (default :data:`SEEDS`, :data:`EPOCHS`).
        batch_sizes: the sweep's batch sizes (default 2, 4, 8, 16 and 64;
            the largest is the normal batch).
        tune: tune the learning rate on the held-out seed (else the linear rule).
        brn: include the batch-renormalized form.
        convergence_seeds: the seeds whose normal-batch cells are checked
            for convergence (default every seed).
        severities: the corruption severities scored (default 1 to 5; every
            corruption at each).
        normal_epochs: epochs of the normal batch's runs (default ``epochs``).
        depth_seeds: the seeds of the deeper network's runs (default every seed).
        depth_batch_sizes: the deeper network's batch sizes (default 8
            and 64).
        form_normal_epochs: ``{norm: epochs}``: the normal batch's epochs
            of the forms of a norm where they differ from ``normal_epochs``
            (``{"gnws": 20}``).
        convergence_factors: the multiples of the references' epochs the
            convergence runs train for (default ``(2,)``; ``(0.5, 2)`` adds
            half).
        form_convergence_factors: ``{norm: factors}``: more multiples for
            the forms of a norm alone (``{"gnws": (4,)}``).
    """
    factors = tuple(sorted(set(convergence_factors))) if convergence_factors else (2,)
    own = tuple(sorted((form_normal_epochs or {}).items()))
    extra = tuple(sorted((norm, tuple(sorted(set(f)))) for norm, f in (form_convergence_factors or {}).items()))
    if quick:
        ignored = [name for name, value in (("batch_sizes", batch_sizes), ("convergence_seeds", convergence_seeds),
                                            ("severities", severities), ("depth_seeds", depth_seeds),
                                            ("depth_batch_sizes", depth_batch_sizes)) if value]
        if ignored:
            raise UsageError("the quick plan is fixed (batch 4 and 16, no deeper network, no convergence runs, 3 "
                             f"corruptions): it takes no {', '.join(f'`{name}`' for name in ignored)}; drop them, "
                             "or drop `quick` for a plan that takes them.")
        return Plan(
            # Batch renormalization only adds a form to train; its ramp is
            # sized without training (tests/diagnostics/test_study.py).
            sweep=forms_of(sweep, brn=False), batch_sizes=(4, 16), depth=(), depth_batch_sizes=(),
            seeds=tuple(seeds or (0, 1)), epochs=epochs or 1, normal_batch=16, steps_per_epoch=3,
            corruptions=(("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 3)),
            precise_bn_batches=2, tune=False, data_args=(("renders", (1, 1, 1)),), normal_epochs=normal_epochs,
            form_normal_epochs=own, convergence_factors=factors, form_convergence_factors=extra,
        )
    batch_sizes = tuple(sorted(set(batch_sizes or (2, 4, 8, 16, 64))))
    for option, value in (("depth_seeds", depth_seeds), ("depth_batch_sizes", depth_batch_sizes)):
        if value and not depth:
            raise UsageError(f"{option} {tuple(value)} are the deeper network's, but the plan has none; "
                             f"name one (the default is resnet56) or leave {option} out.")
    return Plan(
        sweep=forms_of(sweep, brn), batch_sizes=batch_sizes,
        depth=forms_of(depth, brn=False)[:2] if depth else (),
        depth_batch_sizes=tuple(sorted(set(depth_batch_sizes or (8, 64)))) if depth else (),
        seeds=tuple(seeds or SEEDS), epochs=epochs or EPOCHS, normal_batch=max(batch_sizes),
        corruptions=_all_corruptions(tuple(sorted(set(severities))) if severities else (1, 2, 3, 4, 5)), tune=tune,
        convergence_seeds=tuple(convergence_seeds) if convergence_seeds else None, normal_epochs=normal_epochs,
        depth_seeds=tuple(depth_seeds) if depth_seeds and depth else None, form_normal_epochs=own,
        convergence_factors=factors, form_convergence_factors=extra,
    )
