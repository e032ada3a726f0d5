"""nn.MultiheadAttention, F.multi_head_attention_forward and the Transformer
family against torch in float64: gpugrad's state dict copied into torch's
module, then outputs, attention weights and the gradients of the inputs and of
every parameter, with each kind of mask; eval mode and training with
dropout=0; second derivatives; torch's errors."""

import numpy
import pytest
import torch
from conftest import assert_close, make_pair, module_pair, to_torch, torch_device

import gpugrad
import gpugrad.nn.functional as F

TOL = 1e-10
# a bool padding mask beside a float attention mask warns in both libraries (torch's deprecation);
# torch's own notes about its nested-tensor fast path
pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched:UserWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
              pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")]


def _mask(values, device):
    return gpugrad.tensor(values, device=device), to_torch(values, device)


def _compare(rng, ours, theirs, module, torch_module, leaves, device, tol=TOL):
    """Equal values, then equal gradients for one random weighting of the outputs."""
    ours, theirs = [o for o in ours if o is not None], [t for t in theirs if t is not None]
    assert len(ours) == len(theirs)
    total_ours = total_theirs = 0
    for o, t in zip(ours, theirs):
        assert tuple(o.shape) == tuple(t.shape)
        assert_close(o, t, tol)
        weight = rng.standard_normal(tuple(o.shape))
        total_ours = total_ours + (o * gpugrad.tensor(weight, device=device)).sum()
        total_theirs = total_theirs + (t * to_torch(weight, device)).sum()
    total_ours.backward()
    total_theirs.backward()
    for (name, p), q in zip(module.named_parameters(), torch_module.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert_close(p.grad, q.grad, tol, floor=1.0), name
    for a, b in leaves:
        assert_close(a.grad, b.grad, tol, floor=1.0)


def _padding(rng, batch, length, left_aligned=True):
    """A key padding mask (True: padded) that leaves every row at least one step."""
    lengths = rng.integers(1, length + 1, batch)
    steps = numpy.arange(length)[None, :]
    return steps >= lengths[:, None] if left_aligned else steps < (length - lengths)[:, None]


MHA_CASES = [
    ("self_batch_first", dict(batch_first=True), dict()),
    ("self_bool_mask", dict(), dict(attn_mask="bool")),
    ("padding_and_float_mask_3d", dict(dropout=0.0), dict(attn_mask="float3d", key_padding_mask="bool")),
    ("weights_per_head", dict(batch_first=True), dict(key_padding_mask="float", average_attn_weights=False)),
    ("no_weights_sdpa", dict(), dict(attn_mask="bool", key_padding_mask="bool", need_weights=False)),
    ("cross_kdim_vdim", dict(kdim=3, vdim=5, batch_first=True), dict(cross=True)),
    ("cross_same_dims", dict(), dict(cross=True, key_padding_mask="bool")),
    ("bias_kv_zero_attn", dict(add_bias_kv=True, add_zero_attn=True), dict(attn_mask="bool",
                                                                           key_padding_mask="bool")),
    ("no_bias", dict(bias=False), dict(need_weights=False)),
    ("causal_hint", dict(batch_first=True), dict(attn_mask="causal", is_causal=True, need_weights=False)),
]


@pytest.mark.parametrize("name,options,call", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_matches_torch(rng, device, name, options, call):
    embed, heads, batch, length, source = 8, 2, 3, 4, 5
    ours, theirs = module_pair("MultiheadAttention", device, embed, heads, **options)
    batch_first = options.get("batch_first", False)

    def shape(steps, features):
        return (batch, steps, features) if batch_first else (steps, batch, features)

    query, tquery = make_pair(rng, shape(length, embed), device=device)
    if call.get("cross"):
        key, tkey = make_pair(rng, shape(source, options.get("kdim", embed)), device=device)
        value, tvalue = make_pair(rng, shape(source, options.get("vdim", embed)), device=device)
        leaves = [(query, tquery), (key, tkey), (value, tvalue)]
        if "kdim" not in options:
            value, tvalue = key, tkey                   # key is value: the packed path for memory
            leaves = leaves[:2]
    else:
        key = value = query
        tkey = tvalue = tquery
        source = length
        leaves = [(query, tquery)]
    kwargs, tkwargs = {}, {}
    mask = call.get("attn_mask")
    if mask == "bool":
        values = rng.random((length, source)) < 0.3
        values[:, 0] = False                             # no row closed entirely
        kwargs["attn_mask"], tkwargs["attn_mask"] = _mask(values, device)
    elif mask == "float3d":
        kwargs["attn_mask"], tkwargs["attn_mask"] = _mask(rng.standard_normal((batch * heads, length, source)),
                                                          device)
    elif mask == "causal":
        causal = gpugrad.nn.Transformer.generate_square_subsequent_mask(length, dtype=gpugrad.float64)
        kwargs["attn_mask"], tkwargs["attn_mask"] = causal.to(device), to_torch(causal, device)
    padding = call.get("key_padding_mask")
    if padding:
        values = _padding(rng, batch, source)
        if padding == "float":
            values = numpy.where(values, -numpy.inf, rng.standard_normal(values.shape))
        kwargs["key_padding_mask"], tkwargs["key_padding_mask"] = _mask(values, device)
    for option in ("need_weights", "average_attn_weights", "is_causal"):
        if option in call:
            kwargs[option] = tkwargs[option] = call[option]
    out = ours(query, key, value, **kwargs)
    tout = theirs(tquery, tkey, tvalue, **tkwargs)
    assert (out[1] is None) == (tout[1] is None)
    _compare(rng, list(out), list(tout), ours, theirs, leaves, device)


def test_multihead_attention_unbatched_and_functional_form(rng):
    ours, theirs = module_pair("MultiheadAttention", "cpu", 6, 3, kdim=4, vdim=4)
    q, tq = make_pair(rng, (5, 6), device="cpu")
    kv, tkv = make_pair(rng, (7, 4), device="cpu")
    padding = numpy.zeros(7, dtype=bool)
    padding[5:] = True
    mask, tmask = _mask(padding, "cpu")
    out, tout = ours(q, kv, kv, key_padding_mask=mask), theirs(tq, tkv, tkv, key_padding_mask=tmask)
    _compare(rng, list(out), list(tout), ours, theirs, [(q, tq), (kv, tkv)], "cpu")
    # the functional form with packed weights, eval (no dropout) and a static key
    x, tx = make_pair(rng, (4, 2, 6), device="cpu")
    w, tw = make_pair(rng, (18, 6), device="cpu")
    b, tb = make_pair(rng, (18,), device="cpu")
    ow, tow = make_pair(rng, (6, 6), device="cpu")
    static, tstatic = make_pair(rng, (6, 4, 2), device="cpu")
    args = dict(training=False, need_weights=True)
    out = F.multi_head_attention_forward(x, x, x, 6, 3, w, b, None, None, False, 0.5, ow, None, static_k=static, **args)
    tout = torch.nn.functional.multi_head_attention_forward(tx, tx, tx, 6, 3, tw, tb, None, None, False, 0.5, tow,
                                                            None, static_k=tstatic, **args)
    for a, t in zip(out, tout):
        assert_close(a, t, TOL)


def test_fully_masked_rows_as_torch(rng):
    """A query row whose keys are all masked: NaN weights with need_weights (torch's
    explicit softmax), zeros through scaled_dot_product_attention without."""
    ours, theirs = module_pair("MultiheadAttention", "cpu", 4, 2, batch_first=True)
    x, tx = make_pair(rng, (2, 3, 4), device="cpu", requires_grad=False)
    closed = numpy.zeros((3, 3), dtype=bool)
    closed[1] = True
    mask, tmask = _mask(closed, "cpu")
    for need_weights in (True, False):
        out = ours(x, x, x, attn_mask=mask, need_weights=need_weights)
        tout = theirs(tx, tx, tx, attn_mask=tmask, need_weights=need_weights)
        for a, t in zip(out, tout):
            if t is not None:
                assert_close(a, t, TOL)


ACTIVATIONS = {"relu": ("relu", "relu"), "gelu": ("gelu", "gelu"),
               "gelu_module": (lambda: gpugrad.nn.GELU(), lambda: torch.nn.GELU()),
               "silu_function": (lambda: F.silu, lambda: torch.nn.functional.silu)}


def _activation(name, lib):
    made = ACTIVATIONS[name][0 if lib is gpugrad else 1]
    return made() if callable(made) and not isinstance(made, str) else made


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_encoder_layer_matches_torch(rng, device, norm_first, activation):
    d_model, batch, length = 8, 3, 5
    kwargs = dict(dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = gpugrad.nn.TransformerEncoderLayer(d_model, 2, activation=_activation(activation, gpugrad), **kwargs)
    theirs = torch.nn.TransformerEncoderLayer(d_model, 2, activation=_activation(activation, torch), **kwargs)
    ours = ours.double().to(device)
    theirs = theirs.double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: to_torch(v, "cpu") for k, v in ours.state_dict().items()})
    theirs = theirs.to(torch_device(device))
    x, tx = make_pair(rng, (batch, length, d_model), device=device)
    padding = numpy.where(_padding(rng, batch, length), -numpy.inf, 0.0)     # float, as the causal mask
    padding, tpadding = _mask(padding, device)
    causal = gpugrad.nn.Transformer.generate_square_subsequent_mask(length, dtype=gpugrad.float64).to(device)
    tcausal = torch.nn.Transformer.generate_square_subsequent_mask(length, dtype=torch.float64,
                                                                   device=torch_device(device))
    assert_close(causal, tcausal, 0.0)
    out = ours(x, src_mask=causal, src_key_padding_mask=padding)
    tout = theirs(tx, src_mask=tcausal, src_key_padding_mask=tpadding)
    _compare(rng, [out], [tout], ours, theirs, [(x, tx)], device)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_matches_torch(rng, device, mode, batch_first):
    d_model, batch, source, target = 8, 2, 6, 4
    ours, theirs = module_pair("Transformer", device, d_model, 2, num_encoder_layers=2, num_decoder_layers=2,
                          dim_feedforward=16, dropout=0.0, batch_first=batch_first)
    for module in (ours, theirs):
        module.train(mode == "train")

    def shape(steps):
        return (batch, steps, d_model) if batch_first else (steps, batch, d_model)

    src, tsrc = make_pair(rng, shape(source), device=device)
    tgt, ttgt = make_pair(rng, shape(target), device=device)
    tgt_mask = gpugrad.nn.Transformer.generate_square_subsequent_mask(target, device=device, dtype=gpugrad.float64)
    ttgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(target, device=torch_device(device),
                                                                     dtype=torch.float64)
    src_padding, tsrc_padding = _mask(_padding(rng, batch, source), device)
    tgt_padding, ttgt_padding = _mask(_padding(rng, batch, target), device)
    out = ours(src, tgt, tgt_mask=tgt_mask, src_key_padding_mask=src_padding, tgt_key_padding_mask=tgt_padding,
               memory_key_padding_mask=src_padding)
    tout = theirs(tsrc, ttgt, tgt_mask=ttgt_mask, src_key_padding_mask=tsrc_padding,
                  tgt_key_padding_mask=ttgt_padding, memory_key_padding_mask=tsrc_padding)
    _compare(rng, [out], [tout], ours, theirs, [(src, tsrc), (tgt, ttgt)], device)


def test_encoder_inference_fast_path_values(rng):
    """torch's eval fast path (nested tensors) zeroes padded positions before the final
    norm; gpugrad gives the same values, and keeps them where torch does not take it."""
    layer_args = dict(dim_feedforward=16, dropout=0.0, batch_first=True)
    ours = gpugrad.nn.TransformerEncoder(gpugrad.nn.TransformerEncoderLayer(8, 2, **layer_args), 2,
                                         norm=gpugrad.nn.LayerNorm(8)).double().eval()
    theirs = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, **layer_args), 2,
                                         norm=torch.nn.LayerNorm(8), enable_nested_tensor=True).double().eval()
    theirs.load_state_dict({k: to_torch(v, "cpu") for k, v in ours.state_dict().items()})
    x, tx = make_pair(rng, (3, 5, 8), device="cpu", requires_grad=False)
    for left_aligned in (True, False):
        padding, tpadding = _mask(_padding(rng, 3, 5, left_aligned), "cpu")
        with gpugrad.no_grad(), torch.no_grad():
            assert_close(ours(x, src_key_padding_mask=padding), theirs(tx, src_key_padding_mask=tpadding), TOL)
        assert_close(ours(x, src_key_padding_mask=padding), theirs(tx, src_key_padding_mask=tpadding), TOL)


def test_second_derivatives_match_torch(rng):
    ours, theirs = module_pair("TransformerEncoderLayer", "cpu", 4, 2, dim_feedforward=6, dropout=0.0,
                          activation="gelu", norm_first=True)
    x, tx = make_pair(rng, (3, 2, 4), device="cpu")
    out = ours(x)
    # torch's flash kernel on the CPU has no second derivative: its math kernel has
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        tout = theirs(tx)
    weight = rng.standard_normal(tuple(out.shape))
    params, tparams = list(ours.parameters()), list(theirs.parameters())
    grads = gpugrad.autograd.grad((out * gpugrad.tensor(weight)).sum(), [x] + params, create_graph=True)
    tgrads = torch.autograd.grad((tout * torch.tensor(weight)).sum(), [tx] + tparams, create_graph=True)
    v = [rng.standard_normal(tuple(g.shape)) for g in grads]
    second = gpugrad.autograd.grad(sum((g * gpugrad.tensor(w)).sum() for g, w in zip(grads, v)), [x] + params,
                                   allow_unused=True)
    tsecond = torch.autograd.grad(sum((g * torch.tensor(w)).sum() for g, w in zip(tgrads, v)), [tx] + tparams,
                                  allow_unused=True)
    for a, b in zip(second, tsecond):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a, b, 1e-9, floor=1.0)


def test_state_dicts_load_both_ways_and_init_is_torchs():
    theirs = torch.nn.Transformer(16, 4, 2, 2, 32)
    ours = gpugrad.nn.Transformer(16, 4, 2, 2, 32)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: gpugrad.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    for (k, v), tv in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert numpy.array_equal(v.numpy(), tv.numpy()), k
    mha = gpugrad.nn.MultiheadAttention(16, 4, add_bias_kv=True, kdim=8, vdim=6)
    tmha = torch.nn.MultiheadAttention(16, 4, add_bias_kv=True, kdim=8, vdim=6)
    assert [(k, tuple(v.shape)) for k, v in mha.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tmha.state_dict().items()]
    assert mha.in_proj_weight is None and tuple(mha.q_proj_weight.shape) == (16, 16)
    assert float(mha.in_proj_bias.abs().max()) == 0.0 and float(mha.out_proj.bias.abs().max()) == 0.0
    # Xavier-uniform weights of the Transformer: |w| <= sqrt(6 / (fan_in + fan_out))
    w = ours.encoder.layers[0].linear1.weight
    bound = (6 / (16 + 32)) ** 0.5
    fresh = gpugrad.nn.Transformer(16, 4, 2, 2, 32).encoder.layers[0].linear1.weight.detach().numpy()
    assert numpy.abs(fresh).max() <= bound and numpy.abs(fresh).max() > 0.9 * bound and w.shape == (32, 16)
    assert repr(gpugrad.nn.TransformerEncoderLayer(8, 2)).replace("gpugrad", "torch") == \
        repr(torch.nn.TransformerEncoderLayer(8, 2)).replace("torch.nn.functional", "torch")


def test_errors_as_torch(rng):
    def both(call):
        outcomes = []
        for lib in (gpugrad, torch):
            try:
                call(lib)
                outcomes.append(None)
            except Exception as error:                  # noqa: BLE001 (comparing what each raises)
                outcomes.append((type(error), str(error).replace("torch.Size(", "").replace("gpugrad.Size(", "")))
        assert outcomes[0] is not None and outcomes[0][0] == outcomes[1][0], outcomes

    both(lambda lib: lib.nn.MultiheadAttention(6, 4))
    both(lambda lib: lib.nn.TransformerEncoderLayer(8, 2, activation="tanh"))
    mha = lambda lib: lib.nn.MultiheadAttention(4, 2).double()  # noqa: E731
    ones = lambda lib, *shape, **kw: lib.ones(*shape, dtype=kw.get("dtype", lib.float64))  # noqa: E731
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 4), ones(lib, 3, 4), ones(lib, 3, 4)))
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 4), ones(lib, 3, 2, 4), ones(lib, 3, 2, 4),
                              attn_mask=ones(lib, 2, 3, dtype=lib.bool)))
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 4), ones(lib, 3, 2, 4), ones(lib, 3, 2, 4),
                              key_padding_mask=ones(lib, 2, 4, dtype=lib.bool)))
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 4), ones(lib, 3, 2, 4), ones(lib, 3, 2, 4),
                              attn_mask=ones(lib, 3, 3, dtype=lib.int64)))
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 4), ones(lib, 3, 2, 4), ones(lib, 3, 2, 4), is_causal=True))
    both(lambda lib: mha(lib)(ones(lib, 3, 2, 5), ones(lib, 3, 2, 5), ones(lib, 3, 2, 5)))
    both(lambda lib: lib.nn.Transformer(8, 2, 1, 1, 8)(ones(lib, 3, 2, 8, dtype=lib.float32),
                                                       ones(lib, 3, 3, 8, dtype=lib.float32)))
    both(lambda lib: lib.nn.Transformer(8, 2, 1, 1, 8)(ones(lib, 3, 2, 6, dtype=lib.float32),
                                                       ones(lib, 3, 2, 6, dtype=lib.float32)))
