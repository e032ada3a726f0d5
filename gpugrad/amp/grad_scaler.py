"""GradScaler: loss scaling for float16 training (torch.amp.GradScaler).

``scaler.scale(loss).backward()`` back-propagates a loss multiplied by the
scale, so small float16 gradients do not flush to zero; ``scaler.step(opt)``
divides the gradients by the scale (``unscale_``), notes whether any is inf or
nan, and steps unless one was; ``scaler.update()`` halves the scale after such
a step and doubles it after ``growth_interval`` clean ones.

The scale, the growth tracker and the inf flag live on the gradients' device
and are updated there: on the GPU a training step reads nothing back to the
host (the optimizer skips the step on the device: see
``Optimizer.step_unless``).  ``get_scale()`` and ``state_dict()`` read them.
On the GPU, ``unscale_`` is one launch per gradient dtype (kernels/foreach.cu's
unscale_check: torch's _amp_foreach_non_finite_check_and_unscale_), and the
multi-tensor optimizers read ``found_inf`` in their own launch.
"""

import warnings

from gpugrad import backend, dtypes
from gpugrad.cuda import multi_tensor
from gpugrad.tensor import Tensor

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """torch.amp.GradScaler's arguments and methods: ``scale``, ``unscale_``,
    ``step``, ``update``, ``get_scale``, ``state_dict``/``load_state_dict``,
    ``is_enabled``.  ``device`` is where the gradients are ("cuda" or "cpu")."""

    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        self._device = device
        self._enabled = bool(enabled)
        if self._enabled and device == "cuda" and not backend.cuda_available():
            warnings.warn("GradScaler is enabled, but CUDA is not available.  Disabling.", UserWarning, stacklevel=2)
            self._enabled = False
        if growth_factor <= 1.0:
            raise ValueError("The growth factor must be > 1.0.")
        if backoff_factor >= 1.0:
            raise ValueError("The backoff factor must be < 1.0.")
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._init_growth_tracker = 0
        self._scale = None                 # 0-d float32 array on the device, made on first use
        self._growth_tracker = None        # 0-d int32 array beside it
        self._optimizers = {}              # id(optimizer) -> {"stage": ..., "found_inf": array}

    def is_enabled(self):
        return self._enabled

    # -- the device state ------------------------------------------------------------
    def _lazy_init(self, like):
        if self._scale is None:
            xp = backend.xp_for(like)
            with backend.device_guard(backend.device_of(like)):
                self._scale = xp.full((), self._init_scale, dtype=dtypes.float32)
                self._growth_tracker = xp.full((), self._init_growth_tracker, dtype=dtypes.int32)

    def _state(self, optimizer):
        return self._optimizers.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    # -- the API -----------------------------------------------------------------------
    def scale(self, outputs):
        """outputs (a tensor, or an iterable of tensors) multiplied by the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            self._lazy_init(outputs.array)
            return outputs * Tensor._make(backend.to_device(self._scale, backend.device_of(outputs.array)))
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if isinstance(outputs, dict):
            return {k: self.scale(v) for k, v in outputs.items()}
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def unscale_(self, optimizer):
        """Divide the optimizer's gradients by the scale, in place, and note
        whether any of them holds inf or nan (on the device)."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        for grad in grads:
            if grad.dtype == dtypes.float16:
                raise ValueError("Attempting to unscale FP16 gradients.")
        found = False
        if grads:
            self._lazy_init(grads[0].array)
        if grads and all(g.is_cuda and g.device == grads[0].device and g.array.flags.c_contiguous for g in grads):
            # one launch per dtype: unscale, and note inf / nan in a device flag (no host sync)
            with backend.device_guard(grads[0].device):
                found = grads[0].xp.zeros((), dtype=dtypes.float32)
            multi_tensor.unscale_and_check([g.array for g in grads], self._scale, found)
            for grad in grads:
                grad.increment_version()
        else:
            for grad in grads:
                xp = grad.xp
                array = grad.array
                array *= (1.0 / backend.to_device(self._scale, backend.device_of(array))).astype(array.dtype)
                grad.increment_version()
                bad = ~xp.isfinite(array).all()
                found = bad if found is False else found | bad
            if backend.is_cupy_array(found):
                found = found.astype(dtypes.float32)
        state["found_inf"] = found
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()``, unless the unscaled gradients hold inf or nan;
        unscales first if ``unscale_`` was not called.  Returns what step returns."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        found = state["found_inf"]
        state["stage"] = _STEPPED
        if isinstance(found, bool) or not backend.is_cupy_array(found):         # the CPU: reading it is free
            return None if bool(found) else optimizer.step(*args, **kwargs)
        return optimizer.step_unless(found, *args, **kwargs)

    def update(self, new_scale=None):
        """Back the scale off after a step that met inf or nan, grow it after
        growth_interval clean steps (or set it to ``new_scale``), on the device."""
        if not self._enabled:
            return
        if self._scale is None:
            self._optimizers.clear()
            return
        xp = backend.xp_for(self._scale)
        if new_scale is not None:
            value = new_scale.array if isinstance(new_scale, Tensor) else new_scale
            self._scale[...] = xp.asarray(value, dtype=dtypes.float32)
        else:
            flags = [s["found_inf"] for s in self._optimizers.values() if s["found_inf"] is not None]
            if not flags:
                raise AssertionError("No inf checks were recorded prior to update.")
            found = xp.asarray(flags[0]) != 0
            for flag in flags[1:]:
                found = found | (xp.asarray(flag) != 0)
            successful = self._growth_tracker + 1
            grown = self._scale * xp.float32(self._growth_factor)
            grow = ~found & (successful == self._growth_interval) & xp.isfinite(grown)
            self._scale[...] = xp.where(found, self._scale * xp.float32(self._backoff_factor),
                                        xp.where(grow, grown, self._scale))
            self._growth_tracker[...] = xp.where(found | (successful == self._growth_interval), 0, successful)
        self._optimizers.clear()

    # -- reading and restoring --------------------------------------------------------
    def get_scale(self):
        """The current scale as a Python float (1.0 when disabled)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(backend.to_device(self._scale, backend.CPU))

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = int(new_interval)

    def _get_growth_tracker(self):
        if self._growth_tracker is None:
            return self._init_growth_tracker
        return int(backend.to_device(self._growth_tracker, backend.CPU))

    def state_dict(self):
        """{'scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker'} (empty when disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._scale is not None:
            self._scale[...] = self._init_scale
            self._growth_tracker[...] = self._init_growth_tracker
