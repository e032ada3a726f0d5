"""torch.backends.cudnn's flags.  gpugrad calls no cuDNN (its convolutions are
an unfold and a matrix product, its attention and normalisation its own ops),
so ``is_available()`` is False and the flags below are accepted, kept and read
back, and change nothing:

- ``benchmark``: no convolution algorithms to choose between;
- ``deterministic``: no cuDNN algorithm to pin; gpugrad's own kernels reduce
  in a fixed order, but CuPy's ``scatter_add`` (the backward of embedding and
  of indexing) adds with atomics, whose order varies on the GPU;
- ``enabled``, ``allow_tf32``: no cuDNN call to route.
"""

benchmark = False
deterministic = False
enabled = True
allow_tf32 = True


def is_available():
    """False: gpugrad calls no cuDNN."""
    return False


def version():
    """None: gpugrad calls no cuDNN (torch's answer where cuDNN is absent)."""
    return None
