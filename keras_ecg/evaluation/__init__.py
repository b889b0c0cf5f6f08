"""keras_ecg.evaluation."""

from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics
from keras_ecg.evaluation.bootstrap import macro_metrics
from keras_ecg.evaluation.bootstrap import paired_bootstrap
from keras_ecg.evaluation.downstream import DOWNSTREAM_DEFAULTS
from keras_ecg.evaluation.downstream import DOWNSTREAM_MODES
from keras_ecg.evaluation.downstream import RecordAUCCheckpoint
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import predict_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.evaluation.downstream import trained_class_mask
from keras_ecg.evaluation.embeddings import export_embeddings
from keras_ecg.evaluation.embeddings import plot_embeddings_2d
from keras_ecg.evaluation.experiments import add_physiological_noise
from keras_ecg.evaluation.experiments import label_fraction_subset
from keras_ecg.evaluation.experiments import robustness_table
from keras_ecg.evaluation.finetuning import discriminative_optimizer
from keras_ecg.evaluation.linear_probe import extract_embeddings
from keras_ecg.evaluation.linear_probe import knn_probe
from keras_ecg.evaluation.linear_probe import logistic_probe
from keras_ecg.evaluation.metrics import macro_auc
from keras_ecg.evaluation.metrics import per_class_auc

# Re-exported: `keras_ecg.evaluation.aggregate_windows` predates
# `keras_ecg.inference`.
from keras_ecg.inference.window_aggregation import aggregate_windows
