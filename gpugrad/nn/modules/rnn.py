"""Recurrent layers: RNN, LSTM, GRU (num_layers, bidirectional, batch_first,
dropout between layers, LSTM's proj_size, PackedSequence input) and the cells
RNNCell, LSTMCell, GRUCell, with torch's parameter names, shapes and
initialisation, so that state dicts load both ways.

They are built from differentiable ops (gradients, double backward included,
come from those): the input projection of every step of a layer is one
matrix product; each step then costs a product with the hidden state and a
few elementwise ops.  The steps of a sequence are read through one split
node, so the backward through time is linear in its length.
"""

import math
import numbers
import warnings

from gpugrad import creation, dtypes
from gpugrad.amp import autocast_mode
from gpugrad.nn import functional as F
from gpugrad.nn import init
from gpugrad.nn.modules.module import Module, Parameter
from gpugrad.nn.utils.rnn import PackedSequence
from gpugrad.ops.shape import cat, split_with_sizes, stack

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _cell(mode, x, state, w_hh, b_hh, w_hr=None):
    """One step: ``x`` is the input's projection x W_ih^T + b_ih (batch, gates * hidden),
    ``state`` h, or (h, c) for the LSTM; returns the new state (torch's gate order)."""
    if mode == "LSTM":
        h, c = state
        gates = x + F.linear(h, w_hh, b_hh)
        quarter = gates.shape[1] // 4
        i, f, g, o = split_with_sizes(gates, [quarter] * 4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return (h if w_hr is None else F.linear(h, w_hr)), c
    if mode == "GRU":
        third = x.shape[1] // 3
        x_r, x_z, x_n = split_with_sizes(x, [third] * 3, 1)
        h_r, h_z, h_n = split_with_sizes(F.linear(state, w_hh, b_hh), [third] * 3, 1)
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        return n + z * (state - n)                # (1 - z) * n + z * h
    pre = x + F.linear(state, w_hh, b_hh)
    return pre.tanh() if mode == "RNN_TANH" else pre.relu()


def _rows(state, start, stop):
    return tuple(s[start:stop] for s in state) if isinstance(state, tuple) else state[start:stop]


def _cat_rows(states):
    if isinstance(states[0], tuple):
        return tuple(cat(parts, 0) for parts in zip(*states))
    return cat(states, 0)


def _output(state):
    return state[0] if isinstance(state, tuple) else state


def _direction(mode, projections, batch_sizes, state0, weights, reverse):
    """Run one direction of one layer over time-major packed steps.

    projections: (sum(batch_sizes), gates * hidden); step t holds the first
    batch_sizes[t] sequences (longest first).  state0: h0 (batch, H) or
    (h0, c0).  Returns the outputs (sum(batch_sizes), H_out) and the final
    state of every sequence, in batch order."""
    w_hh, b_hh, w_hr = weights
    steps = split_with_sizes(projections, batch_sizes, 0)
    outputs = [None] * len(steps)
    if not reverse:
        state, finished = state0, []
        for t, x in enumerate(steps):
            running = batch_sizes[t]
            if running < _output(state).shape[0]:          # the shortest sequences ended at step t - 1
                finished.append(_rows(state, running, None))
                state = _rows(state, 0, running)
            state = _cell(mode, x, state, w_hh, b_hh, w_hr)
            outputs[t] = _output(state)
        final = _cat_rows([state] + finished[::-1]) if finished else state
    else:
        state = _rows(state0, 0, batch_sizes[-1])
        for t in range(len(steps) - 1, -1, -1):
            running, have = batch_sizes[t], _output(state).shape[0]
            if running > have:                              # sequences that start (from their end) here
                state = _cat_rows([state, _rows(state0, have, running)])
            state = _cell(mode, steps[t], state, w_hh, b_hh, w_hr)
            outputs[t] = _output(state)
        final = state
    return (outputs[0] if len(outputs) == 1 else cat(outputs, 0)), final


class RNNBase(Module):
    """The shared machinery of RNN, LSTM and GRU (torch.nn.RNNBase)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", UserWarning, stacklevel=3)
        for value, name in ((bias, "bias"), (batch_first, "batch_first")):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for value, name in ((input_size, "input_size"), (hidden_size, "hidden_size")):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input = input_size if layer == 0 else real_hidden * directions
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                names = []
                for kind, shape in shapes:
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(creation.empty(shape, device=device, dtype=dtype)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias uniform in +-1/sqrt(hidden_size), as torch."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def flatten_parameters(self):
        """A no-op: torch packs the weights for cuDNN here; gpugrad calls no cuDNN."""

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        """The parameters per layer and direction: [[weight_ih_l0, weight_hh_l0, ...], ...]."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _layer_weights(self, layer, direction):
        suffix = "_reverse" if direction == 1 else ""
        get = lambda kind: getattr(self, f"{kind}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("bias_ih"), (get("weight_hh"), get("bias_hh"), get("weight_hr"))

    # -- checks ---------------------------------------------------------------------------------
    def _check_input(self, data, packed):
        weight = self.weight_ih_l0
        if data.dtype != weight.dtype and not (autocast_mode.is_autocast_enabled("cpu")
                                               or autocast_mode.is_autocast_enabled("cuda")):
            ours, theirs = dtypes.dtype_name(data.dtype), dtypes.dtype_name(weight.dtype)
            raise ValueError(f"RNN input dtype ({ours}) does not match weight dtype ({theirs}). Convert input: "
                             f"input.to({theirs}), or convert model: model.to({ours})")
        expected = 2 if packed else 3
        if data.ndim != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {data.ndim}")
        if data.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {data.shape[-1]}")

    def _expected_hidden(self, batch, cell=False):
        size = self.hidden_size if cell or self.proj_size == 0 else self.proj_size
        return (self.num_layers * (2 if self.bidirectional else 1), batch, size)

    @staticmethod
    def _check_hidden(hx, expected, message="Expected hidden size {}, got {}"):
        if tuple(hx.shape) != expected:
            raise RuntimeError(message.format(expected, list(hx.shape)))

    def _zeros(self, data, shape):
        return creation.zeros(shape, dtype=data.dtype, device=data.device)

    # -- the forward --------------------------------------------------------------------------
    def forward(self, input, hx=None):
        lstm = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            sizes = [int(v) for v in batch_sizes.tolist()]
            batch, batched = sizes[0], True
        else:
            if input.ndim not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.ndim}D "
                                 + ("instead" if lstm else "tensor instead"))
            batched = input.ndim == 3
            if not batched:
                input = input.unsqueeze(0 if self.batch_first else 1)
            if hx is not None:
                parts = hx if lstm else (hx,)
                want = 3 if batched else 2
                if any(h.ndim != want for h in parts):
                    kind = "batched 3-D" if batched else "unbatched 2-D"
                    got = ", ".join(f"{h.ndim}-D" for h in parts)
                    raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got ({got}) tensors"
                                       if lstm else f"For {kind} input, hx should also be {want}-D but got {got} "
                                       "tensor")
                if not batched:
                    hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
            self._check_input(input, False)
            time_major = input.transpose(0, 1) if self.batch_first else input
            steps, batch = time_major.shape[0], time_major.shape[1]
            if steps == 0:
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
            data = time_major.reshape(steps * batch, self.input_size)
            sizes, sorted_indices, unsorted_indices = [batch] * steps, None, None
        if packed:
            self._check_input(data, True)
        if hx is None:
            h0 = self._zeros(data, self._expected_hidden(batch))
            hx = (h0, self._zeros(data, self._expected_hidden(batch, cell=True))) if lstm else h0
        else:
            if lstm:
                self._check_hidden(hx[0], self._expected_hidden(batch), "Expected hidden[0] size {}, got {}")
                self._check_hidden(hx[1], self._expected_hidden(batch, cell=True), "Expected hidden[1] size {}, got {}")
            else:
                self._check_hidden(hx, self._expected_hidden(batch))
            if sorted_indices is not None:          # the user's hidden state is in the batch's own order
                hx = tuple(h.index_select(1, sorted_indices) for h in hx) if lstm else \
                    hx.index_select(1, sorted_indices)
        output, hidden = self._layers(data, sizes, hx)
        if sorted_indices is not None:
            hidden = tuple(h.index_select(1, unsorted_indices) for h in hidden) if lstm else \
                hidden.index_select(1, unsorted_indices)
        if packed:
            return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), hidden
        output = output.reshape(len(sizes), batch, output.shape[-1])
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            hidden = tuple(h.squeeze(1) for h in hidden) if lstm else hidden.squeeze(1)
        return output, hidden

    def _layers(self, data, sizes, hx):
        """All layers and directions over packed time-major ``data``; returns the last
        layer's outputs and the final states stacked (num_layers * directions, batch, H)."""
        lstm = self.mode == "LSTM"
        directions = 2 if self.bidirectional else 1
        count = self.num_layers * directions

        def per_layer(h):
            return [piece.squeeze(0) for piece in split_with_sizes(h, [1] * count, 0)] if count > 1 else [h.squeeze(0)]

        starts = list(zip(*(per_layer(h) for h in hx))) if lstm else per_layer(hx)
        finals = []
        layer_input = data
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                w_ih, b_ih, weights = self._layer_weights(layer, direction)
                projections = F.linear(layer_input, w_ih, b_ih)        # every step of the layer at once
                out, final = _direction(self.mode, projections, sizes, starts[layer * directions + direction],
                                        weights, reverse=direction == 1)
                outputs.append(out)
                finals.append(final)
            layer_input = outputs[0] if directions == 1 else cat(outputs, 1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        if lstm:
            return layer_input, (stack([f[0] for f in finals], 0), stack([f[1] for f in finals], 0))
        return layer_input, stack(finals, 0)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


def _positional(args, kwargs, names):
    """torch's RNN/GRU take their arguments positionally in this order."""
    if len(args) > len(names):
        raise TypeError(f"expected at most {len(names)} positional arguments, got {len(args)}")
    for name, value in zip(names, args):
        if name in kwargs:
            raise TypeError(f"got multiple values for argument '{name}'")
        kwargs[name] = value
    return kwargs


class RNN(RNNBase):
    """An Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
    (``nonlinearity='relu'``: relu).  ``RNN(input_size, hidden_size,
    num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False)``; forward(input, h0) -> (output, h_n)."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        kwargs = _positional(args, kwargs, ["input_size", "hidden_size", "num_layers", "nonlinearity", "bias",
                                            "batch_first", "dropout", "bidirectional", "device", "dtype"])
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory (torch's gates i, f, g, o): ``LSTM(input_size,
    hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0)``; forward(input, (h0, c0)) ->
    (output, (h_n, c_n)).  With ``proj_size`` the hidden state is projected
    by ``weight_hr_l{k}`` to proj_size features."""

    def __init__(self, *args, **kwargs):
        kwargs = _positional(args, kwargs, ["input_size", "hidden_size", "num_layers", "bias", "batch_first",
                                            "dropout", "bidirectional", "proj_size", "device", "dtype"])
        super().__init__("LSTM", **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit (torch's gates r, z, n; n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn))): ``GRU(input_size, hidden_size, num_layers=1,
    bias=True, batch_first=False, dropout=0.0, bidirectional=False)``;
    forward(input, h0) -> (output, h_n)."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        kwargs = _positional(args, kwargs, ["input_size", "hidden_size", "num_layers", "bias", "batch_first",
                                            "dropout", "bidirectional", "device", "dtype"])
        super().__init__("GRU", **kwargs)


class RNNCellBase(Module):
    """One step of a recurrent layer: weight_ih (gates * hidden, input_size),
    weight_hh (gates * hidden, hidden_size), bias_ih, bias_hh."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(creation.empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(creation.empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input, states):
        """input (and each state) as 2-D, checked as torch's cell kernels check them;
        missing states are zeros.  Returns (input, states, batched)."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        for i, state in enumerate(states):
            if state is not None and state.ndim not in (1, 2):
                what = "hidden" if len(states) == 1 else f"hx[{i}]"
                raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {state.ndim}D instead")
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} expected {self.input_size}")
        prepared = []
        for i, state in enumerate(states):
            if state is None:
                state = creation.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            elif not batched:
                state = state.unsqueeze(0)
            if state.shape[0] != input.shape[0]:
                raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match hidden{i} batch size "
                                   f"{state.shape[0]}")
            if state.shape[1] != self.hidden_size:
                raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {state.shape[1]}, expected "
                                   f"{self.hidden_size}")
            prepared.append(state)
        return input, prepared, batched


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu); input (B, I) or (I,)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        input, (h,), batched = self._prepare(input, [hx])
        mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
        h = _cell(mode, F.linear(input, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: (h', c') from input (B, I) or (I,) and (h, c) (zeros by default)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        input, (h, c), batched = self._prepare(input, [None, None] if hx is None else list(hx))
        h, c = _cell("LSTM", F.linear(input, self.weight_ih, self.bias_ih), (h, c), self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: h' from input (B, I) or (I,) and h (zeros by default)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        input, (h,), batched = self._prepare(input, [hx])
        h = _cell("GRU", F.linear(input, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)
