"""Leakage: the scored records a model has already seen, by their content
fingerprints (`keras_ecg.data.fingerprints`; see docs/leakage.md)."""

import os

from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.jobs.settings import InputError


def fingerprint_sets(read, where):
    """The fingerprint sets `read()` returns (None: none kept); an unreadable
    file is reported and counts as none."""
    try:
        return read()
    except ValueError as error:
        print(f"{where}: {error} Treated as unknown.", flush=True)
        return None


def save_pretraining_fingerprints(output, train, initial=None):
    """Writes the fingerprints of the records `train` pretrains on (with
    those the preset it starts from saw) beside `output/pretrained.keras`.

    Returns:
        What the results record: the file, its number of records and whether
        they are all the model saw; None when `train` lacks a standard lead.
    """
    seen = record_fingerprints.RecordFingerprints.from_dataset(train)
    if seen is None:
        print(
            "no record fingerprints: the data lacks some of the 12 standard leads",
            flush=True,
        )
        return None
    if initial is not None:
        inherited = record_fingerprints.seen_by(initial.fingerprints)
        if inherited is None:
            seen.complete = False  # the preset's own records are unknown
        else:
            seen = inherited.concatenate(seen)
    path = record_fingerprints.sidecar_path(os.path.join(output, "pretrained.keras"))
    record_fingerprints.save_fingerprints(path, {"pretraining": seen})
    return {"file": path, "records": len(seen), "complete": seen.complete}


def starting_fingerprints(settings, preset_path=None):
    """`(seen, source)`: the `RecordFingerprints` of what a downstream run's
    starting weights were fitted to (None: unknown) and where they come from.
    """
    if settings.checkpoint:
        source = f"--checkpoint {settings.checkpoint}"
        sets = fingerprint_sets(
            lambda: record_fingerprints.model_fingerprints(settings.checkpoint), source
        )
        return record_fingerprints.seen_by(sets), source
    if preset_path is not None:
        source = f"--init-from-preset {settings.init_from_preset}"
        sets = fingerprint_sets(
            lambda: record_fingerprints.preset_fingerprints(preset_path), source
        )
        return record_fingerprints.seen_by(sets), source
    return record_fingerprints.RecordFingerprints.empty(), "--random-init"


# How each set's overlap reads: "<n> of <m> test records <verb>".
_SEEN = {
    "pretraining": "were seen in pretraining",
    "training": "are train/val records of the classifier",
}


def leakage_report(scored, pretraining, training, what, sources):
    """How many `scored` records the model saw, printed and for the results.

    Args:
        scored: the `ECGDataset` scored (in mV).
        pretraining: `RecordFingerprints` of what the weights were pretrained
            on, or None (unknown).
        training: `RecordFingerprints` of the classifier's train and val
            records, or None (unknown).
        what: what `scored` is, e.g. "test".
        sources: dict set name -> where its fingerprints come from (for
            "unknown" messages).

    Returns:
        `{"scored": what, "records": n, "pretraining": ..., "training": ...}`,
        each set as `keras_ecg.data.fingerprints.overlap` gives it (`seen`
        None: unknown).
    """
    query = record_fingerprints.RecordFingerprints.from_dataset(scored)
    report = {"scored": what, "records": len(scored)}
    for name, seen in (("pretraining", pretraining), ("training", training)):
        report[name] = record_fingerprints.overlap(seen, query)
    if not len(scored):
        print(f"leakage check: no {what} records to check", flush=True)
        return report
    for name, verb in _SEEN.items():
        result = report[name]
        if query is None or result["seen"] is None:
            why = (
                "the data lacks some of the 12 standard leads"
                if query is None
                else f"{sources[name]} has no record fingerprints"
            )
            print(
                f"leakage check: {what} records that {verb}: unknown ({why})",
                flush=True,
            )
            continue
        bound = "at least " if result["at_least"] else ""
        examples = result["examples"][:3]
        shown = f" (e.g. {_pairs(examples)})" if examples else ""
        print(
            f"leakage check: {bound}{result['seen']} of {len(scored)} {what} "
            f"records {verb}{shown}",
            flush=True,
        )
    return report


def _pairs(examples):
    """`"1 = HR00001, 2"`: a scored record and the record it matches (one id
    where they are the same)."""
    return ", ".join(a if a == b else f"{a} = {b}" for a, b in examples)


def refuse_seen_records(settings, report):
    """Under `--strict`, refuses (one line) scored records the model saw;
    unknown counts pass (there is nothing to refuse on)."""
    if not getattr(settings, "strict", False):
        return
    seen = [
        f"{report[name]['seen']} of {report['records']} {report['scored']} records "
        f"{verb} ({_pairs(report[name]['examples'][:3])})"
        for name, verb in _SEEN.items()
        if report[name].get("seen")
    ]
    if seen:
        raise InputError(
            f"--strict: {'; '.join(seen)}. Score records the model has not seen "
            "(other folds or data), or drop --strict."
        )
