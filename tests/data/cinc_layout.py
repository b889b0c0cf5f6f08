"""Copies of PTB-XL records in the PhysioNet/CinC Challenge 2021 layout.

The Challenge distributes PTB-XL's 500 Hz records as `HR<ecg_id>.hea` +
`HR<ecg_id>.mat`: a MATLAB v4 file holding one `val` int16 matrix (leads x
samples, the `.dat`'s samples unchanged, gain 1000/mV) and a WFDB header
reading it at byte offset 24 (`16+24`), with the initial value and checksum
of every lead, and `#Age/#Sex/#Dx` comments. `scipy.io.savemat(...,
format="4")` writes such a `.mat` byte for byte (checked on the Challenge's
own HR03961 in tests/data/fingerprints_test.py).
"""

import datetime

import numpy as np
import pandas as pd
import scipy.io
import wfdb


def checksum(samples):
    """WFDB's 16-bit signed checksum of one lead's samples."""
    total = int(np.asarray(samples, dtype=np.int64).sum())
    return ((total + 32768) % 65536) - 32768


def cinc_header(name, digital, sampling_rate, lead_names, when, comments):
    """The text of a Challenge 2021 `.hea` for the int16 `digital` (samples x
    leads)."""
    length = len(digital)
    lines = [f"{name} {len(lead_names)} {sampling_rate} {length} {when}"]
    for j, lead in enumerate(lead_names):
        column = digital[:, j]
        lines.append(
            f"{name}.mat 16+24 1000/mv 16 0 {int(column[0])} {checksum(column)} 0 "
            f"{lead}"
        )
    lines += [f"#{line}" for line in comments]
    return "\n".join(lines) + "\n"


def write_cinc_copy(ptbxl_dir, ecg_id, folder):
    """Writes PTB-XL record `ecg_id` (from `records500`) as the Challenge
    stores it: `folder/HR<ecg_id>.hea` + `.mat`. Returns the header path."""
    database = pd.read_csv(ptbxl_dir / "ptbxl_database.csv", index_col="ecg_id")
    row = database.loc[int(ecg_id)]
    record = wfdb.rdrecord(str(ptbxl_dir / row["filename_hr"]), physical=False)
    digital = record.d_signal.astype(np.int16)
    name = f"HR{int(ecg_id):05d}"
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": digital.T}, format="4")
    when = datetime.datetime.fromisoformat(row["recording_date"])
    sex = "Female" if int(row["sex"]) == 1 else "Male"
    comments = [f"Age: {int(row['age'])}", f"Sex: {sex}", "Dx: 426783006"]
    comments += ["Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
    text = cinc_header(
        name,
        digital,
        int(record.fs),
        record.sig_name,
        when.strftime("%d-%b-%Y %H:%M:%S"),
        comments,
    )
    header = folder / f"{name}.hea"
    header.write_text(text)
    return header
