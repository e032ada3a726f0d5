"""The layers of gpugrad.nn."""

from gpugrad.nn.modules.activation import (
    ELU,
    GELU,
    GLU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softmin,
    Softplus,
    Softsign,
    Tanh,
    Threshold,
)
from gpugrad.nn.modules.batchnorm import (
    BatchNorm1d,
    BatchNorm2d,
)
from gpugrad.nn.modules.container import (
    ModuleDict,
    ModuleList,
    ParameterDict,
    ParameterList,
    Sequential,
)
from gpugrad.nn.modules.conv import (
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    MaxPool1d,
    MaxPool2d,
)
from gpugrad.nn.modules.layers import (
    Dropout,
    Embedding,
    Flatten,
    LayerNorm,
    Unflatten,
)
from gpugrad.nn.modules.linear import (
    Bilinear,
    Identity,
    Linear,
)
from gpugrad.nn.modules.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    LinearCrossEntropyLoss,
    LinearCrossEntropyOptions,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from gpugrad.nn.modules.module import (
    Module,
    Parameter,
)
from gpugrad.nn.modules.rnn import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    RNNBase,
    RNNCell,
    RNNCellBase,
)
from gpugrad.nn.modules.transformer import (
    MultiheadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
