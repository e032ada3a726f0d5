"""gpugrad/viz.py: the graph as dot text."""

import gpugrad
from gpugrad import nn


def test_to_dot_names_ops_and_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    loss = nn.functional.cross_entropy(model(gpugrad.randn(5, 3)), gpugrad.tensor([0, 1, 1, 0, 1]))
    dot = gpugrad.viz.to_dot(loss, params=dict(model.named_parameters()))
    assert dot.startswith("digraph {") and dot.rstrip().endswith("}")
    for label in ("CrossEntropyBackward0", "LinearBackward0", "ReluBackward0", "0.weight\\n(4, 3)", "2.bias\\n(2)",
                  "output0\\n()"):
        assert label in dot, label
    assert dot.count("LinearBackward0") == 2
