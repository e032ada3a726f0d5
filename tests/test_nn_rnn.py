"""nn.RNN / LSTM / GRU, the cells and nn.utils.rnn against torch in float64:
the same state dict in both, then values and gradients (through time, with
packed sequences, of h0/c0 and of every parameter), second derivatives, and
torch's errors."""

import numpy
import pytest
import torch
from conftest import assert_close, make_pair, module_pair, to_torch

import gpugrad
from gpugrad.nn.utils import rnn as rnn_utils

TOL = 1e-10


def _backward_both(rng, ours, theirs, device):
    """Back-propagate the same random weights of every output; returns nothing."""
    ours, theirs = [o for o in ours if o is not None], [t for t in theirs if t is not None]
    total_ours = total_theirs = 0
    for o, t in zip(ours, theirs):
        weight = rng.standard_normal(tuple(o.shape))
        total_ours = total_ours + (o * gpugrad.tensor(weight, device=device)).sum()
        total_theirs = total_theirs + (t * to_torch(weight, device)).sum()
    total_ours.backward()
    total_theirs.backward()


def _flat(out):
    """(output, h_n) or (output, (h_n, c_n)) as a flat list."""
    output, hidden = out
    return [output] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def _check_grads(ours_module, theirs_module, pairs):
    for (name, p), q in zip(ours_module.named_parameters(), theirs_module.parameters()):
        assert_close(p.grad, q.grad, TOL, floor=1.0), name
    for a, b in pairs:
        assert_close(a.grad, b.grad, TOL, floor=1.0)


CONFIGS = [
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bias=False)),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=2, batch_first=True)),
    ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True, bias=False)),
    ("GRU", dict(batch_first=True, bidirectional=True)),
    ("GRU", dict(num_layers=3)),
]


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda c: str(c))
def test_layers_match_torch_through_time(rng, device, name, options):
    ours, theirs = module_pair(name, device, 5, 4, **options)
    assert repr(ours) == repr(theirs)
    steps, batch = 7, 3
    shape = (batch, steps, 5) if options.get("batch_first") else (steps, batch, 5)
    x, tx = make_pair(rng, shape, device=device)
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    h_size = options.get("proj_size") or 4
    h0, th0 = make_pair(rng, (layers, batch, h_size), device=device)
    if name == "LSTM":
        c0, tc0 = make_pair(rng, (layers, batch, 4), device=device)
        out, tout = ours(x, (h0, c0)), theirs(tx, (th0, tc0))
        starts = [(h0, th0), (c0, tc0)]
    else:
        out, tout = ours(x, h0), theirs(tx, th0)
        starts = [(h0, th0)]
    for a, b in zip(_flat(out), _flat(tout)):
        assert tuple(a.shape) == tuple(b.shape)
        assert_close(a, b, TOL)
    _backward_both(rng, _flat(out), _flat(tout), device)
    _check_grads(ours, theirs, [(x, tx)] + starts)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_default_state_and_unbatched_input(rng, name):
    ours, theirs = module_pair(name, "cpu", 3, 4, num_layers=2)
    x, tx = make_pair(rng, (6, 3), device="cpu")                     # (L, H_in): no batch dim
    out, tout = ours(x), theirs(tx)
    for a, b in zip(_flat(out), _flat(tout)):
        assert tuple(a.shape) == tuple(b.shape)
        assert_close(a, b, TOL)
    h0 = rng.standard_normal((2, 4))
    hx = (gpugrad.tensor(h0), gpugrad.tensor(h0)) if name == "LSTM" else gpugrad.tensor(h0)
    thx = (torch.tensor(h0), torch.tensor(h0)) if name == "LSTM" else torch.tensor(h0)
    for a, b in zip(_flat(ours(x, hx)), _flat(theirs(tx, thx))):
        assert_close(a, b, TOL)


@pytest.mark.parametrize("name,options", [("LSTM", dict(num_layers=2, bidirectional=True)),
                                          ("GRU", dict(bidirectional=True, batch_first=True)),
                                          ("LSTM", dict(proj_size=2, bidirectional=True)),
                                          ("RNN", dict(num_layers=2))])
def test_packed_sequences_match_torch(rng, device, name, options):
    ours, theirs = module_pair(name, device, 3, 4, **options)
    batch_first = options.get("batch_first", False)
    lengths = [4, 6, 1, 6, 3]                               # unsorted, with a tie
    shape = (5, 6, 3) if batch_first else (6, 5, 3)
    x, tx = make_pair(rng, shape, device=device)
    packed = rnn_utils.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    tpacked = torch.nn.utils.rnn.pack_padded_sequence(tx, lengths, batch_first=batch_first, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == tpacked.batch_sizes.tolist()
    assert packed.sorted_indices.tolist() == tpacked.sorted_indices.tolist()
    assert packed.unsorted_indices.tolist() == tpacked.unsorted_indices.tolist()
    assert_close(packed.data, tpacked.data, 0.0)
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    h0, th0 = make_pair(rng, (layers, 5, options.get("proj_size") or 4), device=device)
    if name == "LSTM":
        c0, tc0 = make_pair(rng, (layers, 5, 4), device=device)
        (out, hidden), (tout, thidden) = ours(packed, (h0, c0)), theirs(tpacked, (th0, tc0))
        starts = [(h0, th0), (c0, tc0)]
    else:
        (out, hidden), (tout, thidden) = ours(packed, h0), theirs(tpacked, th0)
        starts = [(h0, th0)]
    assert isinstance(out, rnn_utils.PackedSequence)
    padded, out_lengths = rnn_utils.pad_packed_sequence(out, batch_first=batch_first, total_length=7)
    tpadded, tlengths = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=batch_first, total_length=7)
    assert out_lengths.tolist() == tlengths.tolist() == lengths
    ours_all = [padded] + (list(hidden) if name == "LSTM" else [hidden])
    theirs_all = [tpadded] + (list(thidden) if name == "LSTM" else [thidden])
    for a, b in zip(ours_all, theirs_all):
        assert tuple(a.shape) == tuple(b.shape)
        assert_close(a, b, TOL)
    _backward_both(rng, ours_all, theirs_all, device)
    _check_grads(ours, theirs, [(x, tx)] + starts)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_second_derivatives_match_torch(rng, name):
    ours, theirs = module_pair(name, "cpu", 2, 3, bidirectional=True)
    x, tx = make_pair(rng, (4, 2, 2), device="cpu")
    out, tout = ours(x)[0], theirs(tx)[0]
    weight = rng.standard_normal(tuple(out.shape))
    params, tparams = list(ours.parameters()), list(theirs.parameters())
    grads = gpugrad.autograd.grad((out * gpugrad.tensor(weight)).sum(), [x] + params, create_graph=True)
    tgrads = torch.autograd.grad((tout * torch.tensor(weight)).sum(), [tx] + tparams, create_graph=True)
    v = [rng.standard_normal(tuple(g.shape)) for g in grads]
    second = gpugrad.autograd.grad(sum((g * gpugrad.tensor(w)).sum() for g, w in zip(grads, v)), [x] + params)
    tsecond = torch.autograd.grad(sum((g * torch.tensor(w)).sum() for g, w in zip(tgrads, v)), [tx] + tparams)
    for a, b in zip(second, tsecond):
        assert_close(a, b, TOL, floor=1.0)


@pytest.mark.parametrize("name,options", [("RNNCell", dict()), ("RNNCell", dict(nonlinearity="relu", bias=False)),
                                          ("LSTMCell", dict()), ("GRUCell", dict()), ("GRUCell", dict(bias=False))])
def test_cells_match_torch(rng, device, name, options):
    ours, theirs = module_pair(name, device, 3, 4, **options)
    assert repr(ours) == repr(theirs)
    x, tx = make_pair(rng, (5, 3), device=device)
    h, th = make_pair(rng, (5, 4), device=device)
    if name == "LSTMCell":
        c, tc = make_pair(rng, (5, 4), device=device)
        out, tout = list(ours(x, (h, c))), list(theirs(tx, (th, tc)))
        starts = [(h, th), (c, tc)]
    else:
        out, tout = [ours(x, h)], [theirs(tx, th)]
        starts = [(h, th)]
    for a, b in zip(out, tout):
        assert_close(a, b, TOL)
    _backward_both(rng, out, tout, device)
    _check_grads(ours, theirs, [(x, tx)] + starts)
    unbatched, tunbatched = ours(x[0].detach()), theirs(tx[0].detach())   # (I,) input, zero state
    unbatched = unbatched if isinstance(unbatched, tuple) else (unbatched,)
    tunbatched = tunbatched if isinstance(tunbatched, tuple) else (tunbatched,)
    for a, b in zip(unbatched, tunbatched):
        assert tuple(a.shape) == tuple(b.shape) == (4,)
        assert_close(a, b, TOL)


def test_state_dict_loads_both_ways_and_init_is_torchs(rng):
    theirs = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True, proj_size=3)
    ours = gpugrad.nn.LSTM(6, 5, num_layers=2, bidirectional=True, proj_size=3)
    ours.load_state_dict({k: gpugrad.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    for (k, v), (tk, tv) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == tk and tuple(v.shape) == tuple(tv.shape) and numpy.array_equal(v.numpy(), tv.numpy())
    assert [[tuple(p.shape) for p in layer] for layer in ours.all_weights] == \
        [[tuple(p.shape) for p in layer] for layer in theirs.all_weights]
    bound = 1 / numpy.sqrt(5)
    values = numpy.concatenate([p.detach().numpy().ravel() for p in gpugrad.nn.GRU(8, 5, 2).parameters()])
    assert numpy.abs(values).max() <= bound and numpy.abs(values).max() > 0.9 * bound
    assert abs(values.std() - bound / numpy.sqrt(3)) < 0.1 * bound      # uniform(-b, b)
    ours.flatten_parameters()                                           # accepted: nothing to pack


def test_dropout_between_layers_and_its_warning(rng):
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        gpugrad.nn.GRU(3, 4, dropout=0.5)
    ours, theirs = module_pair("LSTM", "cpu", 3, 4, num_layers=2, dropout=0.5)
    x = rng.standard_normal((5, 2, 3))
    ours.eval()
    theirs.eval()
    assert_close(ours(gpugrad.tensor(x))[0], theirs(torch.tensor(x))[0], TOL)
    ours.train()
    gpugrad.manual_seed(0)
    dropped = ours(gpugrad.tensor(x))[0]
    assert relative_change(dropped, ours.eval()(gpugrad.tensor(x))[0]) > 1e-3


def relative_change(a, b):
    return float(((a - b).norm() / b.norm()).item())


def test_errors_as_torch(rng):
    def both(build, call):
        outcomes = []
        for lib in (gpugrad, torch):
            try:
                call(lib, build(lib))
                outcomes.append(None)
            except Exception as error:                  # noqa: BLE001 (comparing what each raises)
                outcomes.append((type(error), str(error).replace("torch.", "").replace("gpugrad.", "")))
        assert outcomes[0] is not None and outcomes[0] == outcomes[1], outcomes

    lstm = lambda lib: lib.nn.LSTM(4, 3).double()  # noqa: E731
    both(lstm, lambda lib, m: m(lib.ones(5, 2, 3, dtype=lib.float64)))
    both(lstm, lambda lib, m: m(lib.ones(5, 2, 4, dtype=lib.float64), (lib.ones(1, 3, 3, dtype=lib.float64),
                                                                        lib.ones(1, 2, 3, dtype=lib.float64))))
    both(lstm, lambda lib, m: m(lib.ones(5, 2, 4, dtype=lib.float64), (lib.ones(1, 2, 3, dtype=lib.float64),
                                                                        lib.ones(1, 2, 2, dtype=lib.float64))))
    both(lstm, lambda lib, m: m(lib.ones(5, 2, 4, dtype=lib.float64), (lib.ones(2, 3, dtype=lib.float64),
                                                                        lib.ones(2, 3, dtype=lib.float64))))
    both(lstm, lambda lib, m: m(lib.ones(4, dtype=lib.float64)))
    gru = lambda lib: lib.nn.GRU(4, 3).double()  # noqa: E731
    both(gru, lambda lib, m: m(lib.ones(5, 2, 4, dtype=lib.float64), lib.ones(1, 3, 3, dtype=lib.float64)))
    both(gru, lambda lib, m: m(lib.ones(5, 2, 4, dtype=lib.float64), lib.ones(2, 3, dtype=lib.float64)))
    both(gru, lambda lib, m: m(lib.ones(0, 2, 4, dtype=lib.float64)))
    with pytest.raises(ValueError, match="does not match weight dtype"):
        gpugrad.nn.GRU(4, 3)(gpugrad.ones(5, 2, 4, dtype=gpugrad.float64))
    cell = lambda lib: lib.nn.LSTMCell(4, 3).double()  # noqa: E731
    both(cell, lambda lib, m: m(lib.ones(2, 5, dtype=lib.float64)))
    both(cell, lambda lib, m: m(lib.ones(2, 4, dtype=lib.float64), (lib.ones(3, 3, dtype=lib.float64),) * 2))
    both(cell, lambda lib, m: m(lib.ones(2, 4, dtype=lib.float64), (lib.ones(2, 2, dtype=lib.float64),
                                                                     lib.ones(2, 3, dtype=lib.float64))))
    both(cell, lambda lib, m: m(lib.ones(2, 2, 4, dtype=lib.float64)))
    for build in (lambda lib: lib.nn.RNN(3, 4, nonlinearity="sigmoid"), lambda lib: lib.nn.LSTM(3, 4, proj_size=4),
                  lambda lib: lib.nn.GRU(3, 4, proj_size=2), lambda lib: lib.nn.LSTM(3, 4, dropout=1.5),
                  lambda lib: lib.nn.LSTM(3, 0), lambda lib: lib.nn.LSTM(3, 4, 0), lambda lib: lib.nn.RNN(3.0, 4),
                  lambda lib: lib.nn.GRU(3, 4, batch_first=1)):
        both(build, lambda lib, m: None)


# -- nn.utils.rnn -----------------------------------------------------------------------------------

def test_pad_pack_and_back_match_torch(rng, device):
    lengths = [3, 5, 1, 5]
    seqs = [make_pair(rng, (n, 2), device=device) for n in lengths]
    ours, theirs = [s for s, _ in seqs], [t for _, t in seqs]
    for options in (dict(), dict(batch_first=True, padding_value=-1.5), dict(batch_first=True, padding_side="left")):
        assert_close(rnn_utils.pad_sequence(ours, **options), torch.nn.utils.rnn.pad_sequence(theirs, **options), 0.0)
    packed = rnn_utils.pack_sequence(ours, enforce_sorted=False)
    tpacked = torch.nn.utils.rnn.pack_sequence(theirs, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == tpacked.batch_sizes.tolist()
    assert_close(packed.data, tpacked.data, 0.0)
    padded, got = rnn_utils.pad_packed_sequence(packed, batch_first=True, padding_value=9.0)
    tpadded, tgot = torch.nn.utils.rnn.pad_packed_sequence(tpacked, batch_first=True, padding_value=9.0)
    assert got.tolist() == tgot.tolist() and got.dtype == gpugrad.int64 and got.device.type == "cpu"
    assert_close(padded, tpadded, 0.0)
    for a, b in zip(rnn_utils.unpack_sequence(packed), torch.nn.utils.rnn.unpack_sequence(tpacked)):
        assert_close(a, b, 0.0)
    _backward_both(rng, [padded], [tpadded], device)
    for s, t in seqs:
        assert_close(s.grad, t.grad, 0.0)
    moved = packed.double()
    assert moved.data.dtype == gpugrad.float64 and moved.batch_sizes is packed.batch_sizes


def test_packing_errors_as_torch():
    x = gpugrad.ones(3, 4)
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        rnn_utils.pack_padded_sequence(x, [3, 2, 2, 0])
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        rnn_utils.pack_padded_sequence(x, [2, 3, 2, 1])
    with pytest.raises(RuntimeError, match="Expected `len\\(lengths\\)` to be equal to batch_size"):
        rnn_utils.pack_padded_sequence(x, [2, 3, 2])
    with pytest.raises(RuntimeError, match="exceeds"):
        rnn_utils.pack_padded_sequence(x, [4, 2, 2, 1])
    with pytest.raises(RuntimeError, match="1D CPU int64 tensor"):
        rnn_utils.pack_padded_sequence(x, gpugrad.tensor([[3, 2, 2, 1]]))
    with pytest.raises(ValueError, match="Expected total_length to be at least"):
        rnn_utils.pad_packed_sequence(rnn_utils.pack_padded_sequence(x, [3, 2, 2, 1]), total_length=2)
    with pytest.raises(RuntimeError, match="received an empty list of sequences"):
        rnn_utils.pad_sequence([])
