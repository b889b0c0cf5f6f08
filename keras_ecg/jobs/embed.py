"""`keras-ecg embed`: the embeddings of a pretrained encoder, exported (and
optionally drawn in 2-D)."""

import dataclasses
import os
from typing import ClassVar

from keras_ecg import choices
from keras_ecg.data.durations import drop_short_records
from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import load_keras
from keras_ecg.jobs.common import model_rate
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import require_preprocessor
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import select_split
from keras_ecg.jobs.common import statistics_of
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import check_length


@dataclasses.dataclass(kw_only=True)
class EmbedSettings(DataSettings):
    """The settings of `keras-ecg embed` (its flags, same defaults)."""

    command: ClassVar[str] = "embed"
    RULES: ClassVar[dict] = {"window_seconds": "> 0", "stride_seconds": "> 0"}
    CHOICES: ClassVar[dict] = {"split": choices.SPLITS, "plot": choices.EMBED_PLOTS}
    INPUT_FILES: ClassVar[tuple] = ("checkpoint",)

    output: str = "runs/embed"
    overwrite: bool = False
    checkpoint: str
    split: str = "all"
    window_seconds: float = 2.5
    stride_seconds: float | None = None
    plot: str | None = None


def run(settings):
    """Runs `keras-ecg embed` with `settings`; returns the results
    (also in `embed_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (checkpoint, data, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_embed, settings)


def run_embed(settings):
    print_header(settings, "embed")
    from keras_ecg.evaluation.embeddings import export_embeddings
    from keras_ecg.evaluation.embeddings import plot_embeddings_2d
    from keras_ecg.evaluation.linear_probe import extract_embeddings

    pretrained = load_keras(settings.checkpoint, "--checkpoint")
    preprocessor = require_preprocessor(pretrained, settings.checkpoint, "--checkpoint")
    rate = model_rate(settings, preprocessor, "pretrained model")
    data = select_split(settings, load_data(settings, rate), settings.split)
    if len(data) == 0:
        raise InputError(
            f"no records in the {settings.split!r} split of {settings.data}."
        )
    check_length(
        "--window-seconds", settings.window_seconds, data, f"{settings.split!r} split"
    )
    folder = run_folder(settings, "embed", data)
    folder.check()
    window = max(
        seconds_to_samples(settings.window_seconds, rate), preprocessor.window_length
    )
    data = drop_short_records(data, window, f"{window / rate:g} s window")
    data = preprocessor.prepare(data, standardize=False)
    folder.create()
    embeddings = extract_embeddings(
        pretrained.backbone,
        data,
        window_seconds=settings.window_seconds,
        stride_seconds=settings.stride_seconds,
        standardizer=statistics_of(preprocessor),
    )
    paths = export_embeddings(
        embeddings,
        data.record_ids,
        data.labels,
        data.classes,
        os.path.join(settings.output, "embeddings"),
    )
    results = {"embeddings": [str(p) for p in paths], "shape": list(embeddings.shape)}
    print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} -> {paths}")
    if settings.plot:
        png = os.path.join(settings.output, f"embeddings_{settings.plot}.png")
        plot_embeddings_2d(
            embeddings,
            data.labels,
            data.classes,
            png,
            method=settings.plot,
            seed=settings.seed,
        )
        results["plot"] = png
        print(f"2-D {settings.plot} plot -> {png}")
    out = folder.finish(results)
    print(f"Results written to {out}")
    return results
