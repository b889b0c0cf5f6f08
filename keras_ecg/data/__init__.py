"""keras_ecg.data."""

from keras_ecg.data.ecg_dataset import LABEL_VOCABULARIES
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.label_mapping import LabelAlignment
from keras_ecg.data.label_mapping import align_labels
from keras_ecg.data.label_mapping import scp_snomed_table
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.pipelines import make_pretraining_dataset
from keras_ecg.data.pipelines import make_supervised_dataset
from keras_ecg.data.pipelines import make_window_dataset
from keras_ecg.data.pipelines import window_starts
from keras_ecg.data.ptbxl import LABEL_SETS
from keras_ecg.data.ptbxl import TEST_FOLDS
from keras_ecg.data.ptbxl import TRAIN_FOLDS
from keras_ecg.data.ptbxl import VAL_FOLDS
from keras_ecg.data.ptbxl import load_ptbxl
from keras_ecg.data.ptbxl import split_ptbxl
from keras_ecg.data.signal_cache import SignalCache
from keras_ecg.data.snomed import scored_snomed_classes
from keras_ecg.data.snomed import snomed_table
from keras_ecg.data.synthetic import DEFAULT_CLASSES as SYNTHETIC_CLASSES
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.data.wfdb_folder import WFDB_LABEL_SETS
from keras_ecg.data.wfdb_folder import load_wfdb_folder
from keras_ecg.data.wfdb_folder import read_wfdb_record
