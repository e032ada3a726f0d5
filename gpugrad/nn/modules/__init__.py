from gpugrad.nn.modules.activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from gpugrad.nn.modules.container import ModuleList, Sequential
from gpugrad.nn.modules.layers import Dropout, Embedding, Flatten, LayerNorm
from gpugrad.nn.modules.linear import Identity, Linear
from gpugrad.nn.modules.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from gpugrad.nn.modules.module import Module, Parameter
