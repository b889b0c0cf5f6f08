"""keras_ecg.models."""

from keras_ecg.models import encoders
from keras_ecg.models.byol import BYOL
from keras_ecg.models.cpc import CPC
from keras_ecg.models.ecg_classifier import ECGClassifier
from keras_ecg.models.ecg_preprocessor import ECGPreprocessor
from keras_ecg.models.simclr import SimCLR
from keras_ecg.models.swav import SwAV
