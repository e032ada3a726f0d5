"""Variable-length sequences for the recurrent layers (torch.nn.utils.rnn):
PackedSequence, pack_padded_sequence / pad_packed_sequence, pad_sequence,
pack_sequence, unpad_sequence, unpack_sequence.

A PackedSequence holds the steps of a batch of sequences time-major, each
step holding only the sequences still running (sorted longest first):
``data`` (sum of lengths, *), ``batch_sizes`` (sequences per step, a CPU
int64 tensor), ``sorted_indices`` / ``unsorted_indices`` (the sort and its
inverse, None when the batch came sorted).  Every conversion is one
differentiable gather (index_select) of the rows, so gradients flow back to
the padded or listed inputs.
"""

import collections

import numpy

from gpugrad import backend, dtypes
from gpugrad.creation import full, tensor
from gpugrad.ops.shape import cat, index_select
from gpugrad.tensor import Tensor

_PackedSequenceBase = collections.namedtuple("PackedSequence_",
                                             ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])


def _invert_permutation(permutation):
    if permutation is None:
        return None
    inverse = numpy.empty(len(permutation), dtype=numpy.int64)
    inverse[backend.to_device(permutation.array, backend.CPU)] = numpy.arange(len(permutation))
    return tensor(inverse, device=permutation.device)


class PackedSequence(_PackedSequenceBase):
    """A packed batch of variable-length sequences (see the module's
    docstring); made by :func:`pack_padded_sequence` or :func:`pack_sequence`,
    accepted and returned by nn.RNN, nn.LSTM and nn.GRU."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = _invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not isinstance(data, (list, tuple)) or len(data) != 2:
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        if batch_sizes.device.type != "cpu":
            raise ValueError("batch_sizes should always be on CPU. Instances of PackedSequence should never be "
                             "created manually. They should be instantiated by functions like pack_sequence and "
                             "pack_padded_sequences in nn.utils.rnn.")
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def _with_data(self, data):
        indices = (None if i is None else i.to(data.device) for i in (self.sorted_indices, self.unsorted_indices))
        return type(self)(data, self.batch_sizes, *indices)

    def to(self, *args, **kwargs):
        """The same sequences with ``data`` converted as ``Tensor.to`` does (the
        indices follow its device; batch_sizes stays on the CPU)."""
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._with_data(data)

    def cuda(self, *args, **kwargs):
        return self._with_data(self.data.cuda(*args, **kwargs))

    def cpu(self):
        return self._with_data(self.data.cpu())

    def double(self):
        return self.to(dtype=dtypes.float64)

    def float(self):
        return self.to(dtype=dtypes.float32)

    def half(self):
        return self.to(dtype=dtypes.float16)

    def long(self):
        return self.to(dtype=dtypes.int64)

    @property
    def is_cuda(self):
        return self.data.is_cuda

    @property
    def device(self):
        return self.data.device

    def is_pinned(self):
        return False


def _lengths(lengths):
    """Sequence lengths as a list of Python ints (from a list or a 1-D CPU tensor)."""
    if isinstance(lengths, Tensor):
        if lengths.ndim != 1 or lengths.device.type != "cpu":
            raise RuntimeError(f"'lengths' argument should be a 1D CPU int64 tensor, but got {lengths.ndim}D "
                               f"{lengths.device.type} {dtypes.dtype_name(lengths.dtype)} tensor")
        return [int(v) for v in lengths.tolist()]
    return [int(v) for v in lengths]


def _rows(input, index):
    """input's rows at ``index`` (a list of ints), one differentiable gather."""
    return index_select(input, 0, tensor(numpy.asarray(index, dtype=numpy.int64).reshape(-1), device=input.device))


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *) with batch_first) whose
    sequence b has ``lengths[b]`` steps.  ``enforce_sorted``: lengths must be
    in decreasing order; otherwise the batch is sorted here and the order
    kept in ``sorted_indices``."""
    lengths = _lengths(lengths)
    batch = input.shape[0 if batch_first else 1] if input.ndim >= 2 else None
    if batch is None or len(lengths) != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {len(lengths)} "
                           f"(batch_size={batch})")
    if any(length <= 0 for length in lengths):
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' "
                           "that is <= 0")
    steps = input.shape[1 if batch_first else 0]
    if max(lengths) > steps:
        raise RuntimeError(f"pack_padded_sequence: a length ({max(lengths)}) exceeds the input's {steps} steps")
    if enforce_sorted:
        if any(a < b for a, b in zip(lengths, lengths[1:])):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                               "to sidestep this requirement if you do not need ONNX exportability.")
        order, sorted_indices = list(range(batch)), None
    else:
        order = sorted(range(batch), key=lambda b: -lengths[b])          # stable, as torch's sort here
        sorted_indices = tensor(numpy.asarray(order, dtype=numpy.int64), device=input.device)
    order = numpy.asarray(order, dtype=numpy.int64)
    ordered = numpy.asarray(lengths, dtype=numpy.int64)[order]
    batch_sizes = (ordered[None, :] > numpy.arange(ordered[0])[:, None]).sum(1)
    index = numpy.concatenate([order[:size] * steps + t if batch_first else t * batch + order[:size]
                               for t, size in enumerate(batch_sizes.tolist())])
    data = _rows(input.reshape((batch * steps,) + tuple(input.shape[2:])), index)
    return PackedSequence(data, tensor(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The padded batch of a PackedSequence and the lengths (a CPU int64
    tensor), in the batch's original order: (T, B, *) or (B, T, *), T the
    longest length or ``total_length``."""
    data, batch_sizes, _, unsorted_indices = sequence
    sizes = [int(v) for v in batch_sizes.tolist()]
    steps, batch = len(sizes), sizes[0]
    if total_length is not None:
        if total_length < steps:
            raise ValueError("Expected total_length to be at least the length of the longest sequence in input, "
                             f"but got total_length={total_length} and max sequence length being {steps}")
        steps = total_length
    sorted_lengths = (numpy.asarray(sizes)[None, :] > numpy.arange(batch)[:, None]).sum(1)
    position = (numpy.arange(batch) if unsorted_indices is None
                else backend.to_device(unsorted_indices.array, backend.CPU))   # original b -> sorted position
    offsets = numpy.concatenate([[0], numpy.cumsum(sizes)])
    t = numpy.arange(steps)[:, None]
    index = numpy.where(t < sorted_lengths[position][None, :], offsets[numpy.minimum(t, len(sizes))] + position,
                        data.shape[0])                                    # (steps, batch); data.shape[0]: padding
    outer, inner = (batch, steps) if batch_first else (steps, batch)
    if batch_first:
        index = index.T
    filler = full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    padded = _rows(cat([data, filler]), index).reshape((outer, inner) + tuple(data.shape[1:]))
    return padded, tensor(sorted_lengths[position].astype(numpy.int64))


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Sequences of shape (L_i, *) padded to the longest into (T, B, *) (or
    (B, T, *) with batch_first); ``padding_side`` 'right' or 'left'."""
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    trailing = tuple(sequences[0].shape[1:])
    for s in sequences[1:]:
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"pad_sequence: every sequence must have the trailing shape {list(trailing)}, "
                               f"got {list(s.shape[1:])}")
    lengths = numpy.asarray([s.shape[0] for s in sequences], dtype=numpy.int64)
    steps, batch = int(lengths.max()), len(sequences)
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
    start = numpy.zeros(batch, dtype=numpy.int64) if padding_side == "right" else steps - lengths
    t = numpy.arange(steps)[:, None]
    index = numpy.where((t >= start) & (t < start + lengths), offsets[:-1] + t - start, offsets[-1])
    outer, inner = (batch, steps) if batch_first else (steps, batch)
    if batch_first:
        index = index.T
    filler = full((1,) + trailing, padding_value, dtype=sequences[0].dtype, device=sequences[0].device)
    rows = cat(sequences + [filler])
    return _rows(rows, index).reshape((outer, inner) + trailing)


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of sequences (L_i, *) (longest first unless enforce_sorted=False)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The list of sequences of a padded batch, each cut to its length."""
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    return [padded_sequences[b, :length] for b, length in enumerate(_lengths(lengths))]


def unpack_sequence(packed_sequences):
    """The list of sequences of a PackedSequence, in the batch's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


def invert_permutation(permutation):
    """The inverse of a permutation (a 1-D int64 tensor), None for None."""
    return _invert_permutation(permutation)


__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence", "pack_sequence",
           "unpad_sequence", "unpack_sequence", "invert_permutation"]
