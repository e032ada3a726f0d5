"""gpugrad.utils.tensorboard.SummaryWriter against torch's: the same calls with
gpugrad and torch tensors write the same events (scalars, histograms, images,
text), read back with tensorboard's own loader; add_graph's graph of a model."""

import pathlib

import numpy
import pytest

import gpugrad

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
pytest.importorskip("PIL")

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.compat.proto.graph_pb2 import GraphDef  # noqa: E402
from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: E402

from gpugrad.utils.tensorboard import SummaryWriter  # noqa: E402


def _events(log_dir):
    """(run folder, event) of every event file under log_dir, wall times zeroed."""
    found = []
    for path in sorted(pathlib.Path(log_dir).rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            event.wall_time = 0
            found.append((path.parent.relative_to(log_dir).as_posix(), event))
    return found


def _write(writer_class, lib, log_dir, values, image, batch, gray):
    with writer_class(log_dir) as writer:
        writer.add_scalar("loss", lib.tensor(1.25), 3)
        writer.add_scalar("lr", 0.5, 4, new_style=True)
        writer.add_scalar("acc", lib.tensor([0.75]), 5, new_style=True, double_precision=True)
        writer.add_scalars("run", {"train": 1.0, "val": lib.tensor(2.0)}, 1)
        writer.add_histogram("weights", lib.tensor(values), 2)
        writer.add_histogram("weights/coarse", lib.tensor(values), 2, bins=12, max_bins=5)
        writer.add_histogram("weights/auto", lib.tensor(values), 2, bins="auto")
        writer.add_image("image", lib.tensor(image), 0)
        writer.add_image("image/hwc", lib.tensor(image.transpose(1, 2, 0).copy()), 0, dataformats="HWC")
        writer.add_image("image/gray", lib.tensor(gray), 0, dataformats="HW")
        writer.add_image("image/uint8", lib.tensor((image * 255).astype(numpy.uint8)), 0)
        writer.add_images("batch", lib.tensor(batch), 0)
        writer.add_text("note", "*lr* = 0.5", 1)


def test_events_are_torchs(tmp_path, rng):
    values = rng.standard_normal(500) * 3
    image = rng.uniform(0, 1, (3, 6, 7))
    batch = rng.uniform(0, 1, (10, 1, 4, 5))
    gray = rng.uniform(0, 1, (5, 4))
    _write(SummaryWriter, gpugrad, tmp_path / "ours", values, image, batch, gray)
    _write(TorchWriter, torch, tmp_path / "theirs", values, image, batch, gray)
    ours, theirs = _events(tmp_path / "ours"), _events(tmp_path / "theirs")
    assert len(ours) == len(theirs) == 17      # 3 file versions, 14 summaries (2 runs of add_scalars)
    for (run, event), (their_run, their_event) in zip(ours, theirs):
        assert run == their_run and event == their_event, f"{event}\n!=\n{their_event}"


def test_scalar_errors_and_purge_step(tmp_path):
    writer = SummaryWriter(tmp_path, purge_step=7)
    with pytest.raises(AssertionError, match="should contain one element"):
        writer.add_scalar("x", gpugrad.ones(2))
    with pytest.raises(ValueError, match="no element"):
        writer.add_histogram("x", gpugrad.zeros(0))
    writer.add_scalar("x", gpugrad.tensor(2.0, dtype=gpugrad.bfloat16), 8)
    writer.close()
    writer.add_scalar("x", 3.0, 9)               # reopens a new event file, as torch's
    writer.close()
    events = _events(tmp_path)
    assert [e.step for _, e in events if e.HasField("session_log")] == [7]
    # (the loader turns simple values into tensors, as TensorBoard reads them)
    assert sorted(v.tensor.float_val[0] for _, e in events for v in e.summary.value) == [2.0, 3.0]


def test_graph_groups_ops_under_their_modules(tmp_path, rng):
    class Net(gpugrad.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = gpugrad.nn.Sequential(gpugrad.nn.Linear(3, 4), gpugrad.nn.Tanh())
            self.head = gpugrad.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.body(x)) * 2

    net = Net()
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(net, gpugrad.tensor(rng.standard_normal((5, 3)), dtype=gpugrad.float32))
    graphs = [e.graph_def for _, e in _events(tmp_path) if e.graph_def]
    assert len(graphs) == 1
    graph = GraphDef()
    graph.ParseFromString(graphs[0])
    nodes = {n.name: n for n in graph.node}
    assert nodes["input/input.0"].op == "IO Node"
    for name in ("Net/Sequential[body]/Linear[0]/weight", "Net/Sequential[body]/Linear[0]/bias",
                 "Net/Linear[head]/weight", "Net/Linear[head]/bias"):
        assert nodes[name].op == "Parameter"
    shape = nodes["Net/Linear[head]/weight"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [2, 4]
    first = nodes["Net/Sequential[body]/Linear[0]/LinearBackward0_0"]
    assert list(first.input) == ["input/input.0", "Net/Sequential[body]/Linear[0]/weight",
                                 "Net/Sequential[body]/Linear[0]/bias"]
    tanh = nodes["Net/Sequential[body]/Tanh[1]/TanhBackward0_0"]
    assert list(tanh.input) == [first.name]
    head = nodes["Net/Linear[head]/LinearBackward0_0"]
    assert list(head.input)[0] == tanh.name
    scaled = [n for n in graph.node if n.name.startswith("Net/MulBackward0")]
    assert len(scaled) == 1 and list(scaled[0].input) == [head.name]
    assert list(nodes["output/output.0"].input) == [scaled[0].name]
    # every input names a node of the graph
    assert all(source in nodes for n in graph.node for source in n.input)


def test_graph_of_a_long_chain_needs_no_recursion(tmp_path):
    class Chain(gpugrad.nn.Module):
        def forward(self, x):
            for _ in range(3000):
                x = x * 1.0001
            return x

    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(Chain(), gpugrad.ones(2))
    graph = GraphDef()
    graph.ParseFromString(next(e.graph_def for _, e in _events(tmp_path) if e.graph_def))
    assert sum(n.op == "MulBackward0" for n in graph.node) == 3000
