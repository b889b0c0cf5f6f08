"""Aligns a dataset's label columns with a model's classes, across vocabularies.

A model trained on PTB-XL predicts SCP-ECG statements (`"AFIB"`); a CinC
folder is labelled with SNOMED-CT codes (`"164889003"`). `align_labels` builds
label columns in the model's class order, mapping codes through
`resources/scp_snomed_mapping.csv` when the vocabularies differ.

That table is DERIVED for keras_ecg (no maintained public SCP -> SNOMED-CT
table was found): it pairs an SCP statement of PTB-XL's `scp_statements.csv`
with a code of the PhysioNet/CinC Challenge 2021 tables only where the two
name the same finding, and was checked against the Challenge's own labels of
the PTB-XL records (see `resources/README.md`).
"""

import dataclasses
import functools

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import LABEL_VOCABULARIES
from keras_ecg.data.ecg_dataset import SCP
from keras_ecg.data.ecg_dataset import SNOMED
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.snomed import class_codes
from keras_ecg.data.snomed import resource_path
from keras_ecg.data.snomed import snomed_descriptions

MAPPING_TABLE = "scp_snomed_mapping.csv"
UNMATCHED_MODES = ("raise", "drop")


@functools.cache
def _read_mapping():
    with resource_path(MAPPING_TABLE).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def scp_snomed_table():
    """The SCP-ECG <-> SNOMED-CT table `align_labels` maps through.

    One row per (SCP statement, SNOMED code) pair naming the same finding; a
    statement may have several codes (e.g. `CRBBB` -> 713427006 complete RBBB
    and 59118001 RBBB, which the Challenge scores as one). Columns:
    `scp_code`, `scp_description` (from PTB-XL's `scp_statements.csv`),
    `snomed_code`, `snomed_description` (from the Challenge 2021 tables),
    `challenge_also_from` (other SCP statements the Challenge coded with the
    same SNOMED code in its PTB-XL records; not used for mapping) and `note`.

    Returns:
        A fresh `pandas.DataFrame` of strings (empty string where blank).

    Example:

    ```python
    table = keras_ecg.data.scp_snomed_table()
    table[table["scp_code"] == "AFIB"]["snomed_code"].tolist()  # ["164889003"]
    ```
    """
    return _read_mapping().copy()


@dataclasses.dataclass
class LabelAlignment:
    """What `align_labels` did.

    Args:
        classes: the model classes that got a label column, in model order
            (the aligned dataset's `classes`).
        model_indices: their positions in the model's class list: select a
            model's outputs with `y_pred[:, alignment.model_indices]`.
        sources: model class -> the data classes whose columns were merged
            (logical or) into its column.
        unmatched: model classes without a counterpart in the data.
        dropped: data classes that no model class uses.
        model_vocabulary: vocabulary of the model's classes.
        data_vocabulary: vocabulary of the dataset's classes.
    """

    classes: list
    model_indices: list
    sources: dict
    unmatched: list
    dropped: list
    model_vocabulary: str
    data_vocabulary: str

    def summary(self):
        """A few lines for a log or report."""
        lines = [
            f"{len(self.classes)} model class(es) aligned "
            f"({self.model_vocabulary} model, {self.data_vocabulary} data)"
        ]
        mapped = [
            f"{name} <- {'+'.join(found)}"
            for name, found in self.sources.items()
            if list(found) != [name]
        ]
        if mapped:
            lines.append("mapped: " + ", ".join(mapped))
        if self.unmatched:
            lines.append(f"no counterpart in the data: {self.unmatched}")
        if self.dropped:
            lines.append(f"data classes not used: {self.dropped}")
        return "\n".join(lines)


def _check_vocabulary(name, value):
    if value not in LABEL_VOCABULARIES:
        raise ValueError(f"{name} must be one of {LABEL_VOCABULARIES}, got {value!r}.")


def _counterparts(name, model_vocabulary, data_classes, data_vocabulary):
    """`(data classes, reason)`: the columns behind model class `name`.

    `reason` says why the list is empty (for the error message).
    """
    if model_vocabulary == data_vocabulary == SNOMED:
        # Classes may merge equivalent codes ("713427006|59118001"): any
        # shared code makes two classes counterparts.
        codes = set(class_codes(name))
        found = [c for c in data_classes if codes & set(class_codes(c))]
        return found, "not among the data's classes"
    if model_vocabulary == data_vocabulary:
        return ([name] if name in data_classes else []), "not among the data's classes"
    table = _read_mapping()
    if model_vocabulary == SCP:
        targets = set(table["snomed_code"][table["scp_code"] == name])
        found = [c for c in data_classes if targets & set(class_codes(c))]
    else:
        codes = set(class_codes(name))
        targets = set(table["scp_code"][table["snomed_code"].isin(codes)])
        found = [c for c in data_classes if c in targets]
    if not targets:
        return [], "no SCP<->SNOMED mapping"
    return found, f"maps to {sorted(targets)}, none among the data's classes"


def align_labels(dataset, classes, vocabulary, unmatched="raise", data_vocabulary=None):
    """Returns `dataset` with label columns for a model's `classes`.

    Same vocabulary: columns are selected and reordered by name (SNOMED classes
    that merge equivalent codes, `"713427006|59118001"`, match any class
    sharing a code). SCP-ECG (`"scp"`) model on SNOMED data or the reverse:
    codes are mapped through `scp_snomed_table()`; a data class that merges
    codes (`label_set="scored"`) is a counterpart when any of its codes maps,
    so `PAC` then also counts 63593006 (SVPB), scored as one with it. A model
    class whose counterparts are several data columns gets their logical or. PTB-XL's
    aggregated label sets (`"scp_subdiagnostic"`, `"scp_superdiagnostic"`)
    align only with data of the same vocabulary.

    A model class without any counterpart is never given an all-zero column:
    by default that raises; with `unmatched="drop"` it is left out of the
    aligned dataset and listed in the returned `LabelAlignment`.

    Args:
        dataset: a labelled `ECGDataset`.
        classes: the model's class names, in its output order.
        vocabulary: the vocabulary of `classes` (see `LABEL_VOCABULARIES`).
        unmatched: `"raise"` or `"drop"`.
        data_vocabulary: the vocabulary of `dataset.classes`; default
            `dataset.label_vocabulary`.

    Returns:
        `(aligned, alignment)`: a copy of `dataset` whose `labels`, `classes`,
        `class_descriptions` and `label_vocabulary` follow the model (signals
        and metadata shared), and a `LabelAlignment`.

    Raises:
        ECGDataError: with `unmatched="raise"`, some model classes have no
            counterpart (the message lists them and why); with `"drop"`, none
            has one.
        ValueError: unknown vocabularies, no mapping between them, duplicate
            `classes`, or a dataset without labels.

    Example:

    ```python
    cinc = keras_ecg.data.load_wfdb_folder("cinc2021/", label_set="scored")
    aligned, alignment = keras_ecg.data.align_labels(
        cinc, ["AFIB", "1AVB", "NORM"], "scp", unmatched="drop"
    )
    y_pred = model.predict(...)[:, alignment.model_indices]
    print(alignment.summary())  # NORM has no SNOMED counterpart
    ```
    """
    if unmatched not in UNMATCHED_MODES:
        raise ValueError(
            f"unmatched must be one of {UNMATCHED_MODES}, got {unmatched!r}."
        )
    if dataset.labels is None:
        raise ValueError("the dataset has no labels to align.")
    if data_vocabulary is None:
        data_vocabulary = dataset.label_vocabulary
        if data_vocabulary is None:
            raise ValueError(
                "the dataset's label_vocabulary is unknown; pass data_vocabulary= "
                f"(one of {LABEL_VOCABULARIES})."
            )
    _check_vocabulary("vocabulary", vocabulary)
    _check_vocabulary("data_vocabulary", data_vocabulary)
    if vocabulary != data_vocabulary and {vocabulary, data_vocabulary} != {
        SCP,
        SNOMED,
    }:
        raise ValueError(
            f"no mapping between {vocabulary!r} and {data_vocabulary!r} classes: "
            "only SCP statements ('scp') and SNOMED-CT codes ('snomed') map to "
            "each other; load PTB-XL with the model's label set instead."
        )
    classes = [str(name) for name in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}.")
    data_classes = [str(name) for name in dataset.classes]

    sources, missing = {}, {}
    for name in classes:
        found, reason = _counterparts(name, vocabulary, data_classes, data_vocabulary)
        if found:
            sources[name] = tuple(found)
        else:
            missing[name] = reason
    if missing and (unmatched == "raise" or not sources):
        listed = ", ".join(f"{name!r} ({why})" for name, why in missing.items())
        hint = (
            " Pass unmatched='drop' to align the others without them."
            if sources
            else ""
        )
        raise ECGDataError(
            None,
            f"{len(missing)} of {len(classes)} model class(es) have no "
            f"counterpart in the data ({vocabulary} model, {data_vocabulary} "
            f"data): {listed}.{hint}",
        )

    kept = [name for name in classes if name in sources]
    column = {name: j for j, name in enumerate(data_classes)}
    data_labels = np.asarray(dataset.labels, dtype=np.float32)
    labels = np.zeros((len(dataset), len(kept)), dtype=np.float32)
    for j, name in enumerate(kept):
        indices = [column[c] for c in sources[name]]
        labels[:, j] = data_labels[:, indices].max(axis=1)
    used = {c for found in sources.values() for c in found}

    if vocabulary == SNOMED:
        descriptions = snomed_descriptions(kept)
    elif vocabulary == data_vocabulary:
        data_descriptions = dataset.class_descriptions or [None] * len(data_classes)
        descriptions = [data_descriptions[column[name]] for name in kept]
    else:
        table = _read_mapping()
        described = dict(zip(table["scp_code"], table["scp_description"]))
        descriptions = [described.get(name) for name in kept]

    aligned = dataclasses.replace(
        dataset,
        labels=labels,
        classes=kept,
        class_descriptions=descriptions,
        label_vocabulary=vocabulary,
    )
    alignment = LabelAlignment(
        classes=list(kept),
        model_indices=[classes.index(name) for name in kept],
        sources=sources,
        unmatched=list(missing),
        dropped=[c for c in data_classes if c not in used],
        model_vocabulary=vocabulary,
        data_vocabulary=data_vocabulary,
    )
    return aligned, alignment
