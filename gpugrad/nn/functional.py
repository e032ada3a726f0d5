from gpugrad.ops.elementwise import gelu, relu, sigmoid, softplus, tanh
from gpugrad.ops.reduction import log_softmax, softmax
