"""keras_ecg.models."""

from keras_ecg.models import encoders
from keras_ecg.models.byol import BYOL
from keras_ecg.models.cpc import CPC
from keras_ecg.models.ecg_classifier import ECGClassifier
from keras_ecg.models.ecg_preprocessor import ECGPreprocessor
from keras_ecg.models.jepa import JEPA
from keras_ecg.models.method_factory import CROP_SECONDS
from keras_ecg.models.method_factory import DEFAULT_ENCODER
from keras_ecg.models.method_factory import ENCODERS
from keras_ecg.models.method_factory import METHODS
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.models.self_supervised_model import SelfSupervisedModel
from keras_ecg.models.simclr import SimCLR
from keras_ecg.models.swav import SwAV
