"""Lead names, matched in one place, and the limb leads derived from two others.

Every reader matches lead names with `lead_key`, so `"aVR"`, `"AVR"`,
`"Lead aVR"`, `"ECG aVR"` and HL7's `"MDC_ECG_LEAD_AVR"` name the same lead.
`"-aVR"` (the inverted aVR of the Cabrera display) stays a lead of its own:
`assemble_leads` derives aVR from it, as it derives any missing limb lead from
two stored ones (Einthoven's and Goldberger's relations).
"""

import re

import numpy as np

from keras_ecg.data.errors import ECGDataError

# Prefixes exports put before a lead name: "ECG I" (EDF+ standard texts),
# "Lead II", "LEAD_V1", "MDC_ECG_LEAD_AVR" (HL7 aECG, DICOM codes).
_PREFIX = re.compile(r"^(?:mdc[\s_]*)?(?:ecg[\s_:-]*)?(?:lead[\s_:-]*)?")

# The six limb leads (and -aVR) are linear combinations of two potential
# differences; the coefficients on (I, II) follow from Einthoven's law
# (III = II - I) and Goldberger's augmented leads.
LIMB_LEAD_COEFFICIENTS = {
    "i": (1.0, 0.0),
    "ii": (0.0, 1.0),
    "iii": (-1.0, 1.0),
    "avr": (-0.5, -0.5),
    "avl": (1.0, -0.5),
    "avf": (-0.5, 1.0),
    "-avr": (0.5, 0.5),
}


def lead_key(name):
    """The key two spellings of one lead share: `lead_key("LEAD_aVR") == "avr"`.

    Case, surrounding blanks, inner spaces and the prefixes `ECG`, `Lead` and
    `MDC_ECG_LEAD_` are ignored.

    Example:

    >>> [lead_key(n) for n in ("I", "Lead II", "ECG V1", "AVR", "-aVR")]
    ['i', 'ii', 'v1', 'avr', '-avr']
    """
    key = str(name).strip().lower()
    stripped = _PREFIX.sub("", key, count=1)
    # A name that is only a prefix ("ECG") keeps it.
    key = stripped or key
    return re.sub(r"\s+", "", key)


def check_unique_leads(names, record, path=None):
    """`{lead_key: index}` of `names`; two names of one lead are an error."""
    keys = {}
    for i, name in enumerate(names):
        key = lead_key(name)
        if key in keys:
            raise ECGDataError(
                record,
                f"lead {name!r} appears more than once (as "
                f"{names[keys[key]]!r} and {name!r})",
                path,
            )
        keys[key] = i
    return keys


def _limb_basis(keys):
    """Two stored limb leads from which I and II can be solved, or None.

    I and II themselves come first: they are what devices store.
    """
    stored = [k for k in LIMB_LEAD_COEFFICIENTS if k in keys]
    for a_index, a in enumerate(stored):
        for b in stored[a_index + 1 :]:
            matrix = np.array([LIMB_LEAD_COEFFICIENTS[a], LIMB_LEAD_COEFFICIENTS[b]])
            if abs(np.linalg.det(matrix)) > 1e-9:
                return a, b
    return None


def assemble_leads(signals, names, requested, record, path=None):
    """The `requested` leads, in that order, deriving missing limb leads.

    A missing limb lead (I, II, III, aVR, aVL, aVF) is computed from two
    stored ones, normally I and II: III = II - I, aVR = -(I + II) / 2,
    aVL = I - II / 2, aVF = II - I / 2 (with aVR = -(-aVR) when the file
    stores the inverted lead). Precordial leads are never derived.

    Args:
        signals: `(num_timesteps, num_leads)` array of the stored leads.
        names: names of its columns.
        requested: lead names to return, in order.
        record, path: for error messages.

    Returns:
        `(signal, derived, basis)`: the `(num_timesteps, len(requested))`
        array, the requested names that were derived, and the two stored
        leads they were derived from (`()` when nothing was derived).

    Raises:
        ECGDataError: a lead is stored twice, or a requested lead is missing
            and cannot be derived.
    """
    signals = np.asarray(signals)
    keys = check_unique_leads(names, record, path)
    missing = [name for name in requested if lead_key(name) not in keys]
    basis = None
    if missing:
        underivable = [n for n in missing if lead_key(n) not in LIMB_LEAD_COEFFICIENTS]
        basis = _limb_basis(keys)
        if underivable or basis is None:
            why = (
                f"{underivable} cannot be derived from other leads"
                if underivable
                else "the limb leads cannot be derived: fewer than two independent "
                "limb leads are stored"
            )
            raise ECGDataError(
                record,
                f"missing lead(s) {missing}: the file has {len(names)} lead(s) "
                f"{list(names)}; {why}",
                path,
            )
        matrix = np.array([LIMB_LEAD_COEFFICIENTS[k] for k in basis])
        stored = np.stack([signals[:, keys[k]] for k in basis], axis=0)
        # Rows of (I, II) over time, solved from the two stored leads.
        i_ii = np.linalg.solve(matrix, stored.astype(np.float64))
    columns, derived = [], []
    for name in requested:
        key = lead_key(name)
        if key in keys:
            columns.append(signals[:, keys[key]])
        else:
            coefficients = np.asarray(LIMB_LEAD_COEFFICIENTS[key])
            columns.append(coefficients @ i_ii)
            derived.append(str(name))
    if basis is None:
        return np.stack(columns, axis=1), [], ()
    stored_names = tuple(names[keys[k]] for k in basis)
    return np.stack(columns, axis=1), derived, stored_names
