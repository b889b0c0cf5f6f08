"""keras_ecg.evaluation."""

from keras_ecg.evaluation.metrics import macro_auc
from keras_ecg.evaluation.metrics import per_class_auc
from keras_ecg.evaluation.window_aggregation import aggregate_windows
