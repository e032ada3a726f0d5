from gpugrad.nn import functional
