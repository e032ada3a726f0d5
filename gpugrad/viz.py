"""The autograd graph behind a tensor as Graphviz dot, like torchviz.make_dot.

    dot = gpugrad.viz.make_dot(loss, params=dict(model.named_parameters()))
    dot.render("graph", format="png")        # needs the graphviz package and binary

``to_dot`` gives the dot text itself and needs nothing installed.
"""

from gpugrad.autograd.graph import AccumulateGrad


def _shape(shape):
    return "(" + ", ".join(map(str, shape)) + ")"


def to_dot(output, params=None):
    """Dot source of the graph that produced ``output`` (a tensor or a tuple of them).
    ``params`` maps names to tensors, to label the leaves."""
    outputs = output if isinstance(output, (tuple, list)) else (output,)
    names = {id(t): name for name, t in (params or {}).items()}
    lines = ["digraph {", '  graph [rankdir=BT];',
             '  node [shape=box, style=filled, fillcolor=lightgray, fontname="monospace", fontsize=10];']
    seen = set()
    stack = []
    for i, t in enumerate(outputs):
        lines.append(f'  out{i} [label="output{i}\\n{_shape(t.shape)}", fillcolor=darkolivegreen1];')
        if t.requires_grad:
            node = t.gradient_edge()[0]
            lines.append(f"  n{id(node)} -> out{i};")
            stack.append(node)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, AccumulateGrad):
            leaf = node.variable
            label = names.get(id(leaf), "")
            lines.append(f'  n{id(node)} [label="{label}\\n{_shape(leaf.shape)}", fillcolor=lightblue];')
            continue
        lines.append(f'  n{id(node)} [label="{node.name()}"];')
        for child, _ in node.next_functions:
            if child is not None:
                lines.append(f"  n{id(child)} -> n{id(node)};")
                stack.append(child)
    lines.append("}")
    return "\n".join(lines)


def make_dot(output, params=None):
    """A ``graphviz.Source`` of the graph (``pip install graphviz`` and the dot binary to render)."""
    try:
        import graphviz  # optional (the viz extra): only make_dot needs it
    except ImportError:
        raise ImportError("make_dot needs the graphviz package (pip install 'gpugrad[viz]'); "
                          "gpugrad.viz.to_dot gives the dot text without it") from None
    return graphviz.Source(to_dot(output, params))
