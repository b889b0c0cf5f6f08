"""keras_ecg.evaluation."""

from keras_ecg.evaluation.embeddings import export_embeddings
from keras_ecg.evaluation.embeddings import plot_embeddings_2d
from keras_ecg.evaluation.finetuning import discriminative_optimizer
from keras_ecg.evaluation.metrics import macro_auc
from keras_ecg.evaluation.metrics import per_class_auc
from keras_ecg.evaluation.window_aggregation import aggregate_windows
