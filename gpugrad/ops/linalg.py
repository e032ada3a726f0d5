"""Matrix products.  One Function, MatMul, for operands of two or more dims
(batch dims broadcast; the engine sums their gradients back); 1-D operands
are given a unit dim first and lose it after, as torch.matmul does.  Linear
(x @ W^T + b) is one node; einsum differentiates through einsum."""

import math
import string

from gpugrad import backend, dtypes, validation
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.tensor import Tensor


def _check_same_dtype(a, b, name):
    if a.dtype != b.dtype:
        raise RuntimeError(f"{name}: expected m1 and m2 to have the same dtype, but got: "
                           f"{dtypes.dtype_name(a.dtype)} != {dtypes.dtype_name(b.dtype)}")


class MatMul(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None,
                              b if ctx.needs_input_grad[0] else None)
        return backend.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return (grad @ b.mT if ctx.needs_input_grad[0] else None,
                a.mT @ grad if ctx.needs_input_grad[1] else None)


def _shape_error(a, b):
    return RuntimeError(f"matmul: shapes {list(a.shape)} and {list(b.shape)} cannot be multiplied "
                        f"({a.shape[-1] if a.ndim else 'scalar'} != "
                        f"{b.shape[-2] if b.ndim > 1 else (b.shape[0] if b.ndim else 'scalar')})")


@autocast_mode.lower_precision
def matmul(input, other):
    """Matrix product with torch.matmul's rules for 1-D, 2-D and batched
    operands (both of one dtype: float32 @ float64 raises, as in torch)."""
    a, b = input, other
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul(): arguments must be Tensors, got {type(a).__name__} and {type(b).__name__}")
    _check_same_dtype(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.shape[-1] != (b.shape[-2] if b.ndim > 1 else b.shape[0]):
        raise _shape_error(a, b)
    validation.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.ndim == 1 and b.ndim == 1:
        return MatMul.apply(a.unsqueeze(0), b.unsqueeze(-1)).reshape(())
    if a.ndim == 1:
        return MatMul.apply(a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return MatMul.apply(a, b.unsqueeze(-1)).squeeze(-1)
    return MatMul.apply(a, b)


@autocast_mode.lower_precision
def mm(input, mat2):
    """The product of two matrices."""
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    if input.shape[1] != mat2.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                           f"({input.shape[0]}x{input.shape[1]} and {mat2.shape[0]}x{mat2.shape[1]})")
    return matmul(input, mat2)


@autocast_mode.lower_precision
def bmm(input, mat2):
    """Batched matrix product of (B, n, m) and (B, m, p)."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ ({input.shape[0]} and {mat2.shape[0]})")
    return matmul(input, mat2)


@autocast_mode.lower_precision
def mv(input, vec):
    """The product of a matrix and a vector."""
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError("mv: expected a matrix and a vector")
    return matmul(input, vec)


@autocast_mode.lower_precision
def dot(input, other):
    """The inner product of two 1-D tensors."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def inner(input, other):
    """The sums of products over the last dim of each: shape input.shape[:-1] +
    other.shape[:-1] (a product when either is 0-d), as torch.inner."""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    if input.shape[-1] != other.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but got shapes "
                           f"{list(input.shape)} and {list(other.shape)}")
    _check_same_dtype(input, other, "inner")
    k = input.shape[-1]
    rows, columns = math.prod(input.shape[:-1]), math.prod(other.shape[:-1])
    product = matmul(input.reshape(rows, k), other.reshape(columns, k).mT)
    return product.reshape(tuple(input.shape[:-1]) + tuple(other.shape[:-1]))


@autocast_mode.lower_precision
def outer(input, vec2):
    """The outer product of two 1-D tensors."""
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: 1D tensors expected, but got {input.ndim}D and {vec2.ndim}D tensors")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


ger = outer


class Ignored(InternalFunction):
    """A term scaled by 0 in addmm, as BLAS takes it: zeros (nan and inf in it
    not propagated); its gradient is grad * 0 (torch's)."""

    @staticmethod
    def forward(ctx, x):
        return ctx.xp.zeros(x.shape, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad * 0


@autocast_mode.lower_precision
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """beta * input + alpha * (mat1 @ mat2); input broadcasts to the product's
    shape; a term with a factor of 0 is ignored (its nan and inf too), as torch's."""
    product = mm(mat1, mat2)
    input = input.expand(product.shape)
    left = Ignored.apply(input) if beta == 0 else (input if beta == 1 else input * beta)
    right = Ignored.apply(product) if alpha == 0 else (product if alpha == 1 else product * alpha)
    return left + right


class Linear(InternalFunction):
    """x @ W^T + b as one node; the weight and bias gradients come out as new
    contiguous arrays (no transposed views to copy into .grad).  x may be 1-D.

    A backward that computes the gradient of this node's output in a kernel
    that can sum it over the rows as well (GELU's on CUDA) hands the sums over
    with :meth:`offer_bias_grad`: the bias's gradient then costs no reduction
    of its own.  They are taken only for that very gradient, unchanged (the
    same tensor at the same version): a gradient summed with another
    consumer's, replaced or changed by a hook is summed here as usual."""

    bias_grad_offer = None        # (gradient, its version, its sums over the rows)

    @staticmethod
    def forward(ctx, x, weight, bias):
        needs = ctx.needs_input_grad
        ctx.save_for_backward(x if needs[1] else None, weight if needs[0] else None)
        ctx.bias_shape = None if bias is None else bias.shape
        out = backend.matmul(x if x.ndim > 1 else x.reshape(1, -1), weight.T)
        if x.ndim == 1:
            out = out.reshape(-1)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        outputs = grad.shape[-1]
        rows = grad.reshape(math.prod(grad.shape[:-1]), outputs)
        grad_x = grad @ weight if needs[0] else None
        grad_weight = rows.mT @ x.reshape(rows.shape[0], x.shape[-1]) if needs[1] else None
        grad_bias = None
        if needs[2]:    # the engine sums a broadcast bias's gradient back to its shape
            offer, ctx.bias_grad_offer = ctx.bias_grad_offer, None
            if offer is not None and offer[0] is grad and offer[1] == grad._version:
                grad_bias = Tensor._make(offer[2])
            else:
                grad_bias = rows.sum(0) if len(ctx.bias_shape) <= 1 else grad
        return grad_x, grad_weight, grad_bias

    @staticmethod
    def wants_bias_sums(output):
        """The Linear node ``output`` (a Tensor) is the result of, when its bias
        (1-D) needs a gradient: the sum of ``output``'s gradient over its rows;
        else None."""
        node = output.grad_fn
        if type(node) is not Linear or output.gradient_edge()[0] is not node or not node.needs_input_grad[2]:
            return None
        return node if node.bias_shape is not None and len(node.bias_shape) == 1 else None

    @staticmethod
    def offer_bias_grad(node, grad, sums):
        """Give ``node`` (from :meth:`wants_bias_sums`) ``sums``, the sums over the
        rows of ``grad`` (a Tensor, the gradient of its output): an array of its features."""
        node.bias_grad_offer = (grad, grad._version, sums)


@autocast_mode.lower_precision
def linear(input, weight, bias=None):
    """input @ weight.T + bias; input (..., in_features) or (in_features,),
    weight (out_features, in_features) (or (in_features,) without bias: a
    product), bias broadcasting to the output (torch's rules and errors)."""
    if input.ndim == 0 or weight.ndim == 0:
        raise RuntimeError(f"both arguments to linear need to be at least 1D, but they are {input.ndim}D and "
                           f"{weight.ndim}D")
    if weight.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {weight.ndim}D")
    _check_same_dtype(input, weight, "linear")
    if weight.ndim == 1:
        if bias is None:
            return matmul(input, weight)
        # torch's paths: addmm (a 2-D input, or a contiguous one with a bias of 1 or more dims) refuses a
        # 1-D weight; otherwise the product plus the bias, added in place
        if input.ndim == 2 or not (bias.ndim == 0 or input.ndim > 2 and not input.is_contiguous()):
            raise RuntimeError("mat2 must be a matrix, got 1-D tensor")
        validation.expandable(bias.shape, tuple(input.shape[:-1]))
        return matmul(input, weight) + bias
    if input.shape[-1] != weight.shape[-1]:
        rows = math.prod(input.shape[:-1])
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and "
                           f"{weight.shape[1]}x{weight.shape[0]})")
    if bias is not None:
        if bias.dtype != weight.dtype:
            raise RuntimeError(f"linear: bias dtype {dtypes.dtype_name(bias.dtype)} does not match weight "
                               f"dtype {dtypes.dtype_name(weight.dtype)}")
        validation.expandable(bias.shape, tuple(input.shape[:-1]) + (weight.shape[0],))
    return Linear.apply(input, weight, bias)


# -- einsum -------------------------------------------------------------------------------

def _parse_einsum(equation, operands):
    """Explicit subscripts, one letter per dim (an ellipsis expanded into letters)."""
    equation = equation.replace(" ", "")
    if "->" in equation:
        inputs, output = equation.split("->")
    else:
        inputs, output = equation, None
    inputs = inputs.split(",")
    if len(inputs) != len(operands):
        raise RuntimeError(f"einsum(): {len(inputs)} operands in the equation, {len(operands)} given")
    used = set(equation) - set(".,->")
    spare = [c for c in string.ascii_letters if c not in used]
    ellipsis_dims = max((op.ndim - (len(sub) - 3) for sub, op in zip(inputs, operands) if "..." in sub),
                        default=0)
    ellipsis = "".join(spare[:ellipsis_dims])
    expanded = []
    for sub, op in zip(inputs, operands):
        if "..." in sub:
            n = op.ndim - (len(sub) - 3)
            sub = sub.replace("...", ellipsis[ellipsis_dims - n:])
        if len(sub) != op.ndim:
            raise RuntimeError(f"einsum(): the subscripts {sub!r} do not match an operand of "
                               f"{op.ndim} dims")
        expanded.append(sub)
    if output is None:
        counts = {}
        for sub in expanded:
            for c in sub:
                counts[c] = counts.get(c, 0) + 1
        output = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ellipsis))
    else:
        output = output.replace("...", ellipsis)
    return expanded, output


class Einsum(InternalFunction):
    @staticmethod
    def forward(ctx, inputs, output, *arrays):
        ctx.inputs, ctx.output = inputs, output
        ctx.save_for_backward(*arrays)
        ctx.shapes = [a.shape for a in arrays]
        return backend.einsum(",".join(inputs) + "->" + output, *arrays)

    @staticmethod
    def backward(ctx, grad):
        operands = ctx.saved_tensors
        grads = [None, None]
        for i, sub in enumerate(ctx.inputs):
            if not ctx.needs_input_grad[i + 2]:
                grads.append(None)
                continue
            if len(set(sub)) != len(sub):
                raise NotImplementedError("einsum backward: repeated subscripts within one operand "
                                          f"({sub!r}) are not supported")
            others = [s for j, s in enumerate(ctx.inputs) if j != i]
            available = set(ctx.output).union(*others) if others else set(ctx.output)
            kept = "".join(c for c in sub if c in available)
            g = einsum(",".join([ctx.output] + others) + "->" + kept,
                       grad, *[operands[j] for j in range(len(operands)) if j != i])
            if kept != sub:     # letters summed away inside this operand only: broadcast back
                shape = tuple(ctx.shapes[i][sub.index(c)] if c in kept else 1 for c in sub)
                order = [c for c in sub if c in kept]
                g = g.permute([kept.index(c) for c in order]).reshape(shape).expand(ctx.shapes[i])
            grads.append(g)
        return tuple(grads)


@autocast_mode.lower_precision
def einsum(equation, *operands):
    """Einstein summation (``einsum('ij,jk->ik', a, b)``), with an ellipsis
    for broadcast dims; differentiable through einsum."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    first = operands[0]
    for op in operands[1:]:
        _check_same_dtype(first, op, "einsum")
    inputs, output = _parse_einsum(equation, operands)
    sizes = {}
    for sub, op in zip(inputs, operands):
        for letter, n in zip(sub, op.shape):
            if sizes.setdefault(letter, n) != n and n != 1 and sizes[letter] != 1:
                raise RuntimeError(f"einsum(): operands do not broadcast with remapped shapes (original->remapped): "
                                   f"subscript {letter} has size {n} for one operand where another has "
                                   f"{sizes[letter]}")
            if sizes[letter] == 1:
                sizes[letter] = n
    if len(set(output)) != len(output):
        raise RuntimeError(f"einsum(): output subscript {output} appears more than once")
    unique = []
    for i, (sub, op) in enumerate(zip(inputs, operands)):
        if len(set(sub)) != len(sub):       # a diagonal first ('ii->i'), so the product sees each letter once
            if any(op.shape[sub.index(c)] != n for c, n in zip(sub, op.shape)):
                raise RuntimeError(f"einsum(): subscript {sub} repeats a letter over dims of different sizes")
            letters = "".join(dict.fromkeys(sub))
            operands = operands[:i] + (Diagonal.apply(op, sub, letters),) + operands[i + 1:]
            sub = letters
        unique.append(sub)
    return Einsum.apply(tuple(unique), output, *operands)


def _diagonal_key(xp, full, letters, sizes):
    """The index that picks x[i, i, j] (full 'iij') as an array over ``letters`` ('ij')."""
    key = []
    for c in full:
        shape = [1] * len(letters)
        shape[letters.index(c)] = sizes[c]
        key.append(xp.arange(sizes[c]).reshape(shape))
    return tuple(key)


class Diagonal(InternalFunction):
    """The elements of x whose repeated subscripts agree ('iij' -> 'ij'); its
    backward puts the gradient back on that diagonal (Diagonal's adjoint,
    DiagonalEmbed, whose own backward is Diagonal again)."""

    @staticmethod
    def forward(ctx, x, full, letters):
        ctx.full, ctx.letters, ctx.shape = full, letters, x.shape
        sizes = dict(zip(full, x.shape))
        return x[_diagonal_key(ctx.xp, full, letters, sizes)]

    @staticmethod
    def backward(ctx, grad):
        return DiagonalEmbed.apply(grad, ctx.full, ctx.letters, ctx.shape), None, None


class DiagonalEmbed(InternalFunction):
    @staticmethod
    def forward(ctx, grad, full, letters, shape):
        ctx.full, ctx.letters = full, letters
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        out[_diagonal_key(ctx.xp, full, letters, dict(zip(full, shape)))] = grad
        return out

    @staticmethod
    def backward(ctx, grad):
        return Diagonal.apply(grad, ctx.full, ctx.letters), None, None, None
