"""keras_ecg.convert: other projects' checkpoints as keras-ecg models.

`convert_reference_checkpoint` reads the PyTorch Lightning checkpoints of the
paper's reference code (hhi-aml/ecg-selfsupervised). Reading them needs
torch (the `torch` extra); nothing here imports it before a checkpoint is
read.
"""

from keras_ecg.convert.reference import REFERENCE_LEADS
from keras_ecg.convert.reference import REFERENCE_METHODS
from keras_ecg.convert.reference import ReferenceCheckpoint
from keras_ecg.convert.reference import ReferenceCheckpointError
from keras_ecg.convert.reference import ReferenceConversion
from keras_ecg.convert.reference import convert_reference
from keras_ecg.convert.reference import convert_reference_checkpoint
from keras_ecg.convert.reference import detect_reference_method
from keras_ecg.convert.reference import read_reference_checkpoint
from keras_ecg.convert.torch_checkpoint import PickledObject
from keras_ecg.convert.torch_checkpoint import load_torch_checkpoint
