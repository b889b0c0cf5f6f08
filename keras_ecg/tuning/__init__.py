"""keras_ecg.tuning: KerasTuner searches scored by a downstream probe."""

from keras_ecg.tuning.hypermodels import SSLHyperModel
from keras_ecg.tuning.hypermodels import build_augmentation
from keras_ecg.tuning.hypermodels import build_method_from_space
from keras_ecg.tuning.search import make_tuner
from keras_ecg.tuning.search import run_search
from keras_ecg.tuning.search_spaces import define_search_space
