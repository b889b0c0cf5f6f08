"""keras-ecg: self-supervised representation learning on 12-lead ECG with Keras 3."""

from keras_ecg.version import __version__
