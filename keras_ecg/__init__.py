"""keras-ecg: self-supervised representation learning on 12-lead ECG with Keras 3."""

# Importing the layers and models registers every serializable class, so
# `import keras_ecg` is enough for `keras.saving.load_model` on a keras-ecg
# `.keras` file.
from keras_ecg import layers
from keras_ecg import losses
from keras_ecg import models
from keras_ecg.models import ECGClassifier
from keras_ecg.models import ECGPreprocessor
from keras_ecg.version import __version__
