"""Explanations of classifier predictions: integrated gradients on ECG records.

`explain_record` / `explain_records` attribute a classifier's per-record
probabilities to every sample of every lead (integrated gradients over the
windows `predict_records` scores), `plot_explanation` draws them on ECG
paper, and `integrated_gradients` is the model-agnostic core. Gradients run
on the TensorFlow, JAX and PyTorch backends (`keras_ecg.explain.gradients`).
"""

from keras_ecg.explain.attributions import integrated_gradients
from keras_ecg.explain.gradients import output_gradients
from keras_ecg.explain.plot import plot_explanation
from keras_ecg.explain.records import Explanation
from keras_ecg.explain.records import explain_record
from keras_ecg.explain.records import explain_records
from keras_ecg.explain.records import lead_shares
