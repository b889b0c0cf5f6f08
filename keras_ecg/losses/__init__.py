"""keras_ecg.losses."""

from keras_ecg.losses.byol_loss import byol_loss
from keras_ecg.losses.byol_loss import byol_regression_loss
from keras_ecg.losses.info_nce import cpc_info_nce_logits
from keras_ecg.losses.info_nce import info_nce_accuracy
from keras_ecg.losses.info_nce import info_nce_loss
from keras_ecg.losses.info_nce import sample_cpc_negative_indices
from keras_ecg.losses.jepa_loss import jepa_loss
from keras_ecg.losses.nt_xent import contrastive_cross_entropy
from keras_ecg.losses.nt_xent import multi_view_nt_xent_loss
from keras_ecg.losses.nt_xent import nt_xent_loss
from keras_ecg.losses.swav_loss import sinkhorn_knopp
from keras_ecg.losses.swav_loss import swapped_prediction_loss
from keras_ecg.losses.swav_loss import swav_loss
