"""keras_ecg.data.

The tf.data pipelines (TensorFlow) and the WFDB / PTB-XL readers (wfdb) are
imported on first use, so models and layers work on a machine that has only
JAX or PyTorch (e.g. a GPU image without TensorFlow).
"""

from keras_ecg.data.ecg_dataset import LABEL_VOCABULARIES
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.errors import FormatsExtraMissingError
from keras_ecg.data.label_mapping import LabelAlignment
from keras_ecg.data.label_mapping import align_labels
from keras_ecg.data.label_mapping import scp_snomed_table
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.signal_cache import SignalCache
from keras_ecg.data.snomed import scored_snomed_classes
from keras_ecg.data.snomed import snomed_table
from keras_ecg.data.synthetic import DEFAULT_CLASSES as SYNTHETIC_CLASSES
from keras_ecg.data.synthetic import make_synthetic_ecg

# name -> (submodule, attribute), imported on first access.
_LAZY = {
    "make_pretraining_dataset": ("pipelines", "make_pretraining_dataset"),
    "make_supervised_dataset": ("pipelines", "make_supervised_dataset"),
    "make_window_dataset": ("pipelines", "make_window_dataset"),
    "window_starts": ("pipelines", "window_starts"),
    "download_dataset": ("download", "download_dataset"),
    "LABEL_SETS": ("ptbxl", "LABEL_SETS"),
    "TEST_FOLDS": ("ptbxl", "TEST_FOLDS"),
    "TRAIN_FOLDS": ("ptbxl", "TRAIN_FOLDS"),
    "VAL_FOLDS": ("ptbxl", "VAL_FOLDS"),
    "load_ptbxl": ("ptbxl", "load_ptbxl"),
    "split_ptbxl": ("ptbxl", "split_ptbxl"),
    "WFDB_LABEL_SETS": ("wfdb_folder", "WFDB_LABEL_SETS"),
    "load_wfdb_folder": ("wfdb_folder", "load_wfdb_folder"),
    "read_wfdb_record": ("wfdb_folder", "read_wfdb_record"),
    "CLINICAL_FORMATS": ("ecg_formats", "CLINICAL_FORMATS"),
    "read_ecg_file": ("ecg_formats", "read_ecg_file"),
    "read_record": ("ecg_formats", "read_record"),
    "apply_label_table": ("label_table", "apply_label_table"),
    "RecordFingerprints": ("fingerprints", "RecordFingerprints"),
    "record_fingerprint": ("fingerprints", "record_fingerprint"),
    "check_disjoint_folds": ("splits", "check_disjoint_folds"),
    "split_by_fractions": ("splits", "split_by_fractions"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f"keras_ecg.data.{module}"), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_ecg.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
