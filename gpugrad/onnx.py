"""torch.onnx: the module imports (model code asks ``is_in_onnx_export()``),
but gpugrad cannot export to ONNX: it records no graph of the forward
(no tracer, no dynamo).  Export from torch: the state dict loads there
(``gpugrad.save`` / safetensors) and ``torch.onnx.export`` does the rest."""


def is_in_onnx_export():
    """False: gpugrad never exports."""
    return False


def export(model, args=(), f=None, **kwargs):
    """Not available: raises NotImplementedError saying what to do instead."""
    raise NotImplementedError(
        "gpugrad.onnx.export is not available: gpugrad does not trace models into a graph. Load the "
        "model's state_dict into the same torch model and call torch.onnx.export there.")


__all__ = ["export", "is_in_onnx_export"]
