"""keras_ecg.inference: a model's predictions per record, from sliding windows.

Below both `keras_ecg.models` and `keras_ecg.evaluation` (it imports only
`keras_ecg.data`): `ECGClassifier.predict_records` and the downstream
protocols of `keras_ecg.evaluation` share it, so that neither imports the
other to predict. The model is anything with a Keras `predict`.
"""

from keras_ecg.inference.window_aggregation import aggregate_windows
from keras_ecg.inference.windowed_prediction import STRIDE_SECONDS
from keras_ecg.inference.windowed_prediction import WINDOW_SECONDS
from keras_ecg.inference.windowed_prediction import predict_records
from keras_ecg.inference.windowed_prediction import predict_windows
from keras_ecg.inference.windowed_prediction import window_batches
from keras_ecg.inference.windowed_prediction import window_lengths
