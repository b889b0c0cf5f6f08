"""How the CLI's trainings are watched: logs, curves and the online probe.

The glue between `keras_ecg.jobs` and `keras_ecg.training_logs` /
`keras_ecg.online_probe`, so that each workflow adds a few lines: it asks
for the probe's records before anything is written (`probe_records`, which
refuses `--keep best-probe` without a probe), then wraps its `fit` with a
`TrainingWatch`.
"""

import os

from keras_ecg import distribute
from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.online_probe import DEFAULT_RECORDS
from keras_ecg.online_probe import DEFAULT_VAL_FRACTION
from keras_ecg.online_probe import MONITOR
from keras_ecg.online_probe import OnlineProbe
from keras_ecg.online_probe import ProbeUnavailable
from keras_ecg.online_probe import _patients
from keras_ecg.online_probe import probe_split
from keras_ecg.online_probe import resolve_every
from keras_ecg.training_logs import TrainingLogs

PROBE_WINDOW_SECONDS = 2.5
BEST_PROBE_FILE = "best_probe.npz"


def probe_records(args, held_out, where="the val split"):
    """The online probe's `(train, val)` records, or None (a line says why).

    Args:
        args: the job's settings (`probe`, `probe_records`,
            `probe_val_fraction`, `probe_every`, `keep`, `epochs`, `seed`).
        held_out: labelled records the encoder does not train on.
        where: what `held_out` is, for the printed line.

    Raises:
        InputError: `--keep best-probe` without a usable probe.
    """
    from keras_ecg.jobs.settings import InputError

    kind = getattr(args, "probe", "knn")
    count = getattr(args, "probe_records", DEFAULT_RECORDS)
    keep = getattr(args, "keep", "last")
    split, reason = None, None
    if kind == "none" or count == 0:
        reason = "--probe none" if kind == "none" else "--probe-records 0"
    else:
        window = seconds_to_samples(PROBE_WINDOW_SECONDS, held_out.sampling_rate)
        long_enough = [i for i, s in enumerate(held_out.signals) if len(s) >= window]
        if len(long_enough) < len(held_out):
            held_out = held_out.subset(long_enough)
        try:
            split = probe_split(
                held_out,
                num_records=count,
                val_fraction=getattr(args, "probe_val_fraction", DEFAULT_VAL_FRACTION),
                seed=args.seed,
            )
        except ProbeUnavailable as error:
            reason = f"{error} in {where}"
    if split is None:
        if keep == "best-probe":
            raise InputError(
                f"--keep best-probe needs the online probe, which is off: {reason}."
            )
        print(f"online probe: off ({reason})", flush=True)
        return None
    every = resolve_every(getattr(args, "probe_every", "auto"), args.epochs)
    disjoint = ", patient-disjoint" if _patients(held_out) is not None else ""
    print(
        f"online probe: {kind} fitted on {len(split[0])} and scored on "
        f"{len(split[1])} labelled records of {where}{disjoint}, every {every} "
        f"epoch{'s' if every > 1 else ''} and at the last; keeping the "
        f"{'best-probe' if keep == 'best-probe' else 'last'} weights",
        flush=True,
    )
    return split


class TrainingWatch:
    """The callbacks that watch one training, and what happens after it.

    Args:
        args: the job's settings (a `keras_ecg.jobs` settings dataclass).
        output_dir: the run folder.
        name: the training's name in TensorBoard (`"pretrain"`, ...).
        probe_split: optional `(train, val)` of the online probe.
        standardizer: the training's standardizer (applied by the probe).
        fresh: start the logs afresh (False for a resumed run).
        subfolder: optional folder of the CSV and PNG in `output_dir`.
        title: title of the curves PNG.
    """

    def __init__(
        self,
        args,
        output_dir,
        name,
        probe_split=None,
        standardizer=None,
        fresh=True,
        subfolder=None,
        title=None,
    ):
        self.title = title
        self.probe = None
        self.keep = getattr(args, "keep", "last")
        if probe_split is not None:
            self.probe = OnlineProbe(
                *probe_split,
                every=resolve_every(getattr(args, "probe_every", "auto"), args.epochs),
                probe=getattr(args, "probe", "knn"),
                window_seconds=PROBE_WINDOW_SECONDS,
                standardizer=standardizer,
                epochs=args.epochs,
                best_weights_path=os.path.join(output_dir, "backup", BEST_PROBE_FILE)
                if self.keep == "best-probe"
                else None,
            )
        self.logs = TrainingLogs(
            output_dir,
            name,
            columns=[MONITOR] if self.probe else [],
            fresh=fresh,
            subfolder=subfolder,
        )

    @property
    def callbacks(self):
        # The probe first: the loggers after it see `probe_macro_auc`.
        return ([self.probe] if self.probe else []) + self.logs.callbacks

    def describe(self):
        return self.logs.describe()

    def after_fit(self, model, history):
        """Restores the best probe epoch (`--keep best-probe`), reports the
        probe's cost, and adds its summary to `history["online_probe"]`."""
        if self.probe is None:
            return history
        summary = self.probe.summary()
        if self.keep == "best-probe":
            epoch = self.probe.restore_best(model)
            summary["kept_epoch"] = epoch
            if distribute.is_chief():
                print(
                    "no online probe result: kept the last weights"
                    if epoch is None
                    else f"kept the weights of epoch {epoch} (best online probe "
                    f"macro AUC {self.probe.best_auc:.4f})",
                    flush=True,
                )
        line = self.probe.cost_line()
        if line and distribute.is_chief():
            print(line, flush=True)
        history["online_probe"] = summary
        return history

    def finish(self):
        """Draws the curves PNG; returns its path or None."""
        path = self.logs.finish(self.title)
        if path:
            print(f"training curves: {path}", flush=True)
        return path
