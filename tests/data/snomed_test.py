import re

import pandas as pd
import pytest

from keras_ecg.data import snomed
from keras_ecg.data.snomed import EQUIVALENT_CODES
from keras_ecg.data.snomed import class_codes
from keras_ecg.data.snomed import resource_path
from keras_ecg.data.snomed import scored_snomed_classes
from keras_ecg.data.snomed import snomed_descriptions
from keras_ecg.data.snomed import snomed_table

pytestmark = pytest.mark.backend_agnostic


def _raw(name):
    with resource_path(name).open() as f:
        return pd.read_csv(f, dtype=str)


def test_tables_hold_the_challenge_rows():
    scored, unscored = _raw(snomed.SCORED_TABLE), _raw(snomed.UNSCORED_TABLE)
    assert len(scored) == 30 and len(unscored) == 103
    assert list(scored.columns[:3]) == ["Dx", "SNOMEDCTCode", "Abbreviation"]
    table = snomed_table()
    assert table.index.is_unique and len(table) == 133
    assert int(table["scored"].sum()) == 30
    row = table.loc["164889003"]
    assert (row["description"], row["abbreviation"], row["scored"]) == (
        "atrial fibrillation",
        "AF",
        True,
    )
    # A code longer than int32, kept exact as a string.
    assert table.loc["67741000119109", "description"] == "left atrial enlargement"
    table.loc["164889003", "description"] = "changed"
    assert snomed_table().loc["164889003", "description"] == "atrial fibrillation"


def test_equivalent_codes_are_the_ones_the_notes_state():
    # Independent reference: the Notes column ("We score X and Y as the same
    # diagnosis") of the Challenge's scored table.
    notes = _raw(snomed.SCORED_TABLE)["Notes"].dropna()
    stated = {
        tuple(re.findall(r"\d+", note)[:2])
        for note in notes
        if "same diagnosis" in note
    }
    assert stated == set(EQUIVALENT_CODES)


def test_scored_classes_merge_the_four_equivalent_pairs():
    classes = scored_snomed_classes()
    assert len(classes) == 30 - 4 == len(set(classes))
    merged = [name for name in classes if "|" in name]
    assert merged == [
        "284470004|63593006",
        "427172004|17338001",
        "713427006|59118001",
        "733534002|164909002",
    ]
    codes = [code for name in classes for code in class_codes(name)]
    assert sorted(codes) == sorted(snomed_table().query("scored").index)
    assert [int(class_codes(name)[0]) for name in classes] == sorted(
        int(class_codes(name)[0]) for name in classes
    )


def test_descriptions_of_plain_merged_and_unknown_classes():
    assert snomed_descriptions(["164889003", "713427006|59118001", "251238007"]) == [
        "atrial fibrillation",
        "complete right bundle branch block | right bundle branch block",
        None,  # in the CinC 2021 headers but in neither Challenge table
    ]
