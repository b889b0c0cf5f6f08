"""keras_ecg.layers.augmentation: ECG augmentations as Keras layers."""

from keras_ecg.layers.augmentation.augmentation_stack import AugmentationStack
from keras_ecg.layers.augmentation.baseline_shift import BaselineShift
from keras_ecg.layers.augmentation.baseline_wander import BaselineWander
from keras_ecg.layers.augmentation.channel_resize import ChannelResize
from keras_ecg.layers.augmentation.dynamic_time_warp import DynamicTimeWarp
from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.em_noise import EMNoise
from keras_ecg.layers.augmentation.gaussian_blur import GaussianBlur
from keras_ecg.layers.augmentation.gaussian_noise import GaussianNoise
from keras_ecg.layers.augmentation.negation import Negation
from keras_ecg.layers.augmentation.powerline_noise import PowerlineNoise
from keras_ecg.layers.augmentation.presets import NOISE_LEVELS
from keras_ecg.layers.augmentation.presets import paper_augmentations
from keras_ecg.layers.augmentation.presets import physiological_noise
from keras_ecg.layers.augmentation.random_resized_crop import RandomResizedCrop
from keras_ecg.layers.augmentation.time_out import TimeOut

__all__ = [
    "AugmentationStack",
    "BaselineShift",
    "BaselineWander",
    "ChannelResize",
    "DynamicTimeWarp",
    "ECGAugmentation",
    "EMNoise",
    "GaussianBlur",
    "GaussianNoise",
    "NOISE_LEVELS",
    "Negation",
    "PowerlineNoise",
    "RandomResizedCrop",
    "TimeOut",
    "paper_augmentations",
    "physiological_noise",
]
