import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.leads import assemble_leads
from keras_ecg.data.leads import lead_key

pytestmark = pytest.mark.backend_agnostic


def test_lead_key_matches_the_spellings_of_one_lead():
    spellings = {
        "i": ["I", "i", " LEAD_I ", "Lead I", "ECG I", "MDC_ECG_LEAD_I"],
        "avr": ["aVR", "AVR", "Lead aVR", "ECG aVR", "MDC_ECG_LEAD_AVR"],
        "v1": ["V1", "v1", "LEAD_V1", "ECG V1"],
        "-avr": ["-aVR", "-AVR"],
    }
    for key, names in spellings.items():
        assert {lead_key(n) for n in names} == {key}, names
    # Different leads stay different.
    assert len({lead_key(n) for n in STANDARD_LEADS + ("-aVR",)}) == 13


def _limb_leads(rng, length=50):
    """I and II at random, the other limb leads from the textbook formulas."""
    lead_i, lead_ii = rng.normal(size=(2, length))
    return {
        "I": lead_i,
        "II": lead_ii,
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }


def test_eight_leads_give_the_twelve_with_einthoven_and_goldberger():
    rng = np.random.default_rng(0)
    limb = _limb_leads(rng)
    chest = rng.normal(size=(50, 6))
    stored = np.column_stack([limb["I"], limb["II"], chest])
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    signal, derived, basis = assemble_leads(stored, names, STANDARD_LEADS, "r")
    expected = np.column_stack([limb[n] for n in STANDARD_LEADS[:6]] + [chest])
    np.testing.assert_allclose(signal, expected, atol=1e-12)
    assert derived == ["III", "aVR", "aVL", "aVF"] and basis == ("I", "II")


@pytest.mark.parametrize(
    "pair", [("II", "III"), ("aVR", "aVL"), ("III", "aVF"), ("-aVR", "aVF")]
)
def test_any_two_independent_limb_leads_give_the_others(pair):
    rng = np.random.default_rng(1)
    limb = _limb_leads(rng)
    limb["-aVR"] = -limb["aVR"]
    stored = np.column_stack([limb[n] for n in pair])
    signal, derived, basis = assemble_leads(stored, list(pair), STANDARD_LEADS[:6], 7)
    expected = np.column_stack([limb[n] for n in STANDARD_LEADS[:6]])
    np.testing.assert_allclose(signal, expected, atol=1e-12)
    assert set(basis) == set(pair)
    assert derived == [n for n in STANDARD_LEADS[:6] if n not in pair]


def test_stored_leads_are_returned_as_stored_and_nothing_is_derived():
    stored = np.arange(24.0).reshape(2, 12)
    names = ["Lead " + n for n in STANDARD_LEADS]
    # The requested order differs from the stored one.
    requested = ["V6", "I", "AVR"]
    signal, derived, basis = assemble_leads(stored, names, requested, "r")
    np.testing.assert_array_equal(signal, stored[:, [11, 0, 3]])
    assert derived == [] and basis == ()


def test_missing_leads_that_cannot_be_derived_name_the_record_and_leads():
    rng = np.random.default_rng(2)
    limb = rng.normal(size=(10, 6))
    with pytest.raises(ECGDataError, match=r"record r7 \(f\.xml\): missing lead"):
        assemble_leads(limb, STANDARD_LEADS[:6], STANDARD_LEADS, "r7", "f.xml")
    with pytest.raises(ECGDataError, match=r"\['V1'.*cannot be derived"):
        assemble_leads(limb, STANDARD_LEADS[:6], STANDARD_LEADS, "r7")
    # One limb lead, or two dependent ones (aVR is -(-aVR)), is not enough.
    one = np.column_stack([limb[:, 0], rng.normal(size=(10, 6))])
    names = ["I", "V1", "V2", "V3", "V4", "V5", "V6"]
    with pytest.raises(ECGDataError, match="fewer than two independent limb"):
        assemble_leads(one, names, STANDARD_LEADS, "r")
    dependent = np.column_stack([limb[:, 3], -limb[:, 3]])
    with pytest.raises(ECGDataError, match="fewer than two independent limb"):
        assemble_leads(dependent, ["aVR", "-aVR"], ["I"], "r")
    with pytest.raises(ECGDataError, match="more than once"):
        assemble_leads(limb[:, :2], ["II", "Lead II"], ["II"], "r")
