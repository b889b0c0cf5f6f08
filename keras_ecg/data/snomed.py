"""The PhysioNet/CinC Challenge 2021 SNOMED-CT tables shipped as package data.

`resources/dx_mapping_scored.csv` (30 rows) and `resources/dx_mapping_unscored.csv`
(103 rows) are verbatim copies of the Challenge's tables (see
`resources/README.md` for their source and licence). Codes are kept as strings,
as they appear in the CinC `#Dx:` header comments.
"""

import functools
import importlib.resources

import pandas as pd

SCORED_TABLE = "dx_mapping_scored.csv"
UNSCORED_TABLE = "dx_mapping_unscored.csv"

# A class that stands for several equivalent codes is named by the codes
# joined with "|", as in the Challenge's weights.csv.
CLASS_SEPARATOR = "|"

# Pairs the Challenge 2021 evaluation scores as one diagnosis: the "|"-joined
# rows/columns of its weights.csv (also stated in the Notes column of
# dx_mapping_scored.csv). The first code of a pair comes first in the name.
EQUIVALENT_CODES = (
    ("733534002", "164909002"),  # complete LBBB = LBBB
    ("713427006", "59118001"),  # complete RBBB = RBBB
    ("284470004", "63593006"),  # PAC = supraventricular premature beats
    ("427172004", "17338001"),  # PVC = ventricular premature beats
)


def resource_path(name):
    """A `Traversable` for the package data file `resources/<name>`."""
    return importlib.resources.files("keras_ecg.data").joinpath("resources", name)


@functools.cache
def _read_tables():
    frames = []
    for name, scored in ((SCORED_TABLE, True), (UNSCORED_TABLE, False)):
        with resource_path(name).open("r", encoding="utf-8") as f:
            table = pd.read_csv(f, dtype={"SNOMEDCTCode": str})
        frames.append(
            pd.DataFrame(
                {
                    "description": table["Dx"].to_numpy(),
                    "abbreviation": table["Abbreviation"].to_numpy(),
                    "scored": scored,
                },
                index=pd.Index(table["SNOMEDCTCode"].str.strip(), name="code"),
            )
        )
    return pd.concat(frames)


def snomed_table():
    """The Challenge 2021 SNOMED-CT codes: description, abbreviation, scored.

    Returns:
        A `pandas.DataFrame` indexed by code (str) with columns `description`
        (e.g. "atrial fibrillation"), `abbreviation` (e.g. "AF") and `scored`
        (bool: one of the 30 codes the Challenge scores). A fresh copy on
        every call.

    Example:

    ```python
    table = keras_ecg.data.snomed_table()
    table.loc["164889003", "description"]  # "atrial fibrillation"
    ```
    """
    return _read_tables().copy()


def class_codes(name):
    """The SNOMED codes a class name stands for (`"713427006|59118001"` -> 2)."""
    return tuple(code.strip() for code in str(name).split(CLASS_SEPARATOR))


def scored_snomed_classes():
    """The Challenge 2021's scored classes, its equivalent codes merged.

    The 30 scored codes less the 4 equivalent pairs give 26 classes, sorted
    numerically by their first code; a merged class is named by its codes
    joined with "|" (e.g. `"713427006|59118001"`, complete RBBB = RBBB).
    """
    table = _read_tables()
    scored = list(table.index[table["scored"]])
    partner = {b: a for a, b in EQUIVALENT_CODES}
    first = dict(EQUIVALENT_CODES)
    classes = []
    for code in scored:
        if code in partner:
            continue
        classes.append(
            code if code not in first else CLASS_SEPARATOR.join((code, first[code]))
        )
    return sorted(classes, key=lambda name: int(class_codes(name)[0]))


def snomed_descriptions(classes):
    """Descriptions of SNOMED classes from the Challenge tables.

    Args:
        classes: class names, each a code or codes joined with "|".

    Returns:
        A list aligned with `classes`: the table's description (merged classes
        join theirs with " | "), or `None` for a code the tables lack.
    """
    descriptions = _read_tables()["description"].to_dict()
    out = []
    for name in classes:
        found = [descriptions.get(code) for code in class_codes(name)]
        out.append(None if None in found else " | ".join(found))
    return out
