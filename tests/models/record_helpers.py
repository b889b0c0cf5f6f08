"""Real PTB-XL records and hand-written WFDB records for the model tests."""

import os

import wfdb

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset

# PTB-XL records present at both 100 Hz (records100) and 500 Hz (records500).
PTBXL_IDS = ("00001", "00002", "00003", "00004")


def ptbxl_header(ptbxl_dir, ecg_id, rate):
    folder, suffix = ("records100", "lr") if rate == 100 else ("records500", "hr")
    return ptbxl_dir / folder / "00000" / f"{ecg_id}_{suffix}.hea"


def ptbxl_dataset(ptbxl_dir, rate, ids=PTBXL_IDS):
    """The records read with `wfdb` itself, independent of keras_ecg's reader."""
    signals = [
        wfdb.rdsamp(str(ptbxl_header(ptbxl_dir, i, rate).with_suffix("")))[0]
        for i in ids
    ]
    return ECGDataset(
        signals=signals,
        record_ids=list(ids),
        sampling_rate=rate,
        lead_names=STANDARD_LEADS,
    )


def link_record(header, folder):
    """Symlinks a record's `.hea` and signal file into `folder` (no copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (header, header.with_suffix(".dat"), header.with_suffix(".mat")):
        if path.exists():
            os.symlink(path, folder / path.name)


def write_record(folder, name, signal, fs=100, leads=STANDARD_LEADS, comments=None):
    # PTB-XL's own resolution (gain 1000/mV): its samples round-trip exactly.
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * signal.shape[1],
        sig_name=list(leads),
        p_signal=signal,
        fmt=["16"] * signal.shape[1],
        adc_gain=[1000.0] * signal.shape[1],
        baseline=[0] * signal.shape[1],
        comments=comments,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"
