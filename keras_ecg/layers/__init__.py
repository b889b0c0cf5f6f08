"""keras_ecg.layers."""

from keras_ecg.layers.augmentation import NOISE_LEVELS
from keras_ecg.layers.augmentation import AugmentationStack
from keras_ecg.layers.augmentation import BaselineShift
from keras_ecg.layers.augmentation import BaselineWander
from keras_ecg.layers.augmentation import ChannelResize
from keras_ecg.layers.augmentation import DynamicTimeWarp
from keras_ecg.layers.augmentation import ECGAugmentation
from keras_ecg.layers.augmentation import EMNoise
from keras_ecg.layers.augmentation import GaussianBlur
from keras_ecg.layers.augmentation import GaussianNoise
from keras_ecg.layers.augmentation import Negation
from keras_ecg.layers.augmentation import PowerlineNoise
from keras_ecg.layers.augmentation import RandomResizedCrop
from keras_ecg.layers.augmentation import TimeOut
from keras_ecg.layers.augmentation import paper_augmentations
from keras_ecg.layers.augmentation import physiological_noise
from keras_ecg.layers.global_pooling import GlobalPooling1D
from keras_ecg.layers.jepa_predictor import JEPAPredictor
from keras_ecg.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_ecg.layers.patch_embedding import PatchEmbedding
from keras_ecg.layers.position_embedding import sincos_position_embedding
from keras_ecg.layers.projection_head import ProjectionHead
from keras_ecg.layers.s4 import S4
from keras_ecg.layers.s4 import s4d_initialization
from keras_ecg.layers.swav_prototypes import SwAVPrototypes
from keras_ecg.layers.transformer_block import TransformerBlock
