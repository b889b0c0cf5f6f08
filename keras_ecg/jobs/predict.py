"""`keras-ecg predict`: per-class probabilities of a classifier for new
records, as a CSV (optionally explained, `--explain`)."""

import dataclasses
import os
from typing import ClassVar

from keras_ecg.jobs.common import load_keras
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import report_derived_leads
from keras_ecg.jobs.common import require_preprocessor
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import Settings
from keras_ecg.jobs.settings import SettingsError


@dataclasses.dataclass(kw_only=True)
class PredictSettings(Settings):
    """The settings of `keras-ecg predict` (its flags, same defaults).

    `data` is a list of folders and record files; they are checked after
    the model and `--explain` (before any record is read).
    """

    command: ClassVar[str] = "predict"
    RULES: ClassVar[dict] = {
        "threshold": "in [0, 1]",
        "batch_size": ">= 1",
        "explain_steps": ">= 1",
    }
    INPUT_FILES: ClassVar[tuple] = ("model",)

    model: str
    data: list[str]
    output: str = "predictions.csv"
    overwrite: bool = False
    threshold: float | None = None
    batch_size: int = 256
    skip_bad_records: bool = False
    explain: int | None = None
    explain_dir: str | None = None
    explain_steps: int = 32

    def _check_explain(self):
        k = self.explain
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise SettingsError(
                f"--explain {k}: K must be between 1 and the model's number of classes"
            )

    def _check_data(self):
        if isinstance(self.data, str) or not self.data:
            raise SettingsError(
                f"--data must be a list of one or more paths (got {self.data!r})"
            )


def run(settings):
    """Runs `keras-ecg predict` with `settings`; returns the results (`records`,
    `output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (model, records, output file).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_predict, settings)


def run_predict(settings):
    print_header(settings, "predict")
    output = settings.output
    if os.path.isdir(output):
        raise InputError(f"--output {output} is a folder; give a .csv file path.")
    if os.path.exists(output) and not settings.overwrite:
        raise InputError(
            f"--output {output} exists; pass --overwrite to replace it, or choose "
            "another file."
        )
    model = load_keras(settings.model, "--model")
    require_preprocessor(model, settings.model, "--model")
    if not hasattr(model, "predict_records"):
        raise InputError(f"--model {settings.model} is not a keras-ecg classifier.")
    explain_dir = _check_explain(settings, model)
    for path in settings.data:
        if not os.path.exists(path):
            raise InputError(f"--data {path}: not found.")
    records = settings.data[0] if len(settings.data) == 1 else list(settings.data)
    # Read here rather than inside predict_records, to report what was
    # derived; the prepared records pass through predict_records unchanged.
    data = model.preprocessor.prepare(
        records,
        on_error="skip" if settings.skip_bad_records else "raise",
        standardize=False,
    )
    report_derived_leads(data)
    frame = model.predict_records(
        data, batch_size=settings.batch_size, threshold=settings.threshold
    )
    if explain_dir is not None:
        from keras_ecg.explain.report import write_explanations

        print(
            f"explaining the top {settings.explain} class(es) of {len(frame)} "
            f"record(s): integrated gradients, {settings.explain_steps} steps",
            flush=True,
        )
        frame = write_explanations(
            frame,
            model,
            data,
            settings.explain,
            settings.explain_steps,
            explain_dir,
            settings.batch_size,
        )
        print(f"{len(frame)} explanation plot(s) -> {explain_dir}", flush=True)
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    frame.to_csv(output, index=False)
    print(
        f"{len(frame)} record(s) x {model.num_classes} classes -> {output}",
        flush=True,
    )
    return {"records": len(frame), "output": output}


def _check_explain(settings, model):
    """The folder of `predict --explain`'s plots, or None without --explain."""
    if getattr(settings, "explain", None) is None:
        return None
    from keras_ecg.explain.report import check_explain_options
    from keras_ecg.explain.report import default_explain_dir

    folder = settings.explain_dir or default_explain_dir(settings.output)
    try:
        check_explain_options(
            settings.explain,
            model.num_classes,
            folder,
            settings.overwrite,
            settings.explain_steps,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    return folder
