"""keras_ecg.models.encoders."""

from keras_ecg.models.encoders.cpc_encoder import CPCContext
from keras_ecg.models.encoders.cpc_encoder import CPCEncoder
from keras_ecg.models.encoders.cpc_encoder import cpc_fc_encoder
from keras_ecg.models.encoders.cpc_encoder import cpc_strided_encoder
from keras_ecg.models.encoders.ecg_transformer import ECGTransformer
from keras_ecg.models.encoders.s4_encoder import S4Encoder
from keras_ecg.models.encoders.s4_token_encoder import S4TokenEncoder
from keras_ecg.models.encoders.xresnet1d import XResNet1D
from keras_ecg.models.encoders.xresnet1d import paper_xresnet1d50
from keras_ecg.models.encoders.xresnet1d import xresnet1d18
from keras_ecg.models.encoders.xresnet1d import xresnet1d34
from keras_ecg.models.encoders.xresnet1d import xresnet1d50
from keras_ecg.models.encoders.xresnet1d import xresnet1d101
