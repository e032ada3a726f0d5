"""SummaryWriter: TensorBoard event files from a training loop, with
torch.utils.tensorboard's names and arguments, on the ``tensorboard``
package's event writer and protocol buffers (what torch itself uses).

Values are gpugrad tensors, NumPy arrays or Python numbers.  Scalars,
histograms and images are written as torch writes them (same protocol
buffers, same histogram buckets, same PNG bytes); ``add_graph`` draws the
autograd graph of one forward call, its ops grouped under the modules that
ran them (torch traces the forward with TorchScript instead, so node names
differ).
"""

import io
import os
import socket
import time
from datetime import datetime

import numpy
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto.attr_value_pb2 import AttrValue
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.versions_pb2 import VersionDef
from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from gpugrad import dtypes
from gpugrad.autograd.grad_mode import enable_grad
from gpugrad.autograd.graph import AccumulateGrad
from gpugrad.tensor import Tensor


def make_np(value):
    """A NumPy array of a tensor (on the host, half types widened to float32), an array or a number."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        if value.dtype in (dtypes.bfloat16, dtypes.float16):
            value = value.float()
        return value.numpy()
    if isinstance(value, numpy.ndarray):
        return value
    if numpy.isscalar(value):
        return numpy.array([value])
    raise NotImplementedError(f"Got {type(value)}, but numpy array or gpugrad tensor are expected.")


class _FileWriter:
    """One event file in ``log_dir``: Summary and Event protocol buffers, written in the background."""

    def __init__(self, log_dir, max_queue=10, flush_secs=120, filename_suffix=""):
        self.event_writer = EventFileWriter(str(log_dir), max_queue, flush_secs, filename_suffix)

    def get_logdir(self):
        return self.event_writer.get_logdir()

    def add_event(self, event, step=None, walltime=None):
        event.wall_time = time.time() if walltime is None else walltime
        if step is not None:
            event.step = int(step)
        self.event_writer.add_event(event)

    def add_summary(self, summary, global_step=None, walltime=None):
        self.add_event(event_pb2.Event(summary=summary), global_step, walltime)

    def flush(self):
        self.event_writer.flush()

    def close(self):
        self.event_writer.close()


class SummaryWriter:
    """Writes scalars, histograms, images, text and the model's graph to an
    event file in ``log_dir`` (default ``runs/<date>_<host><comment>``), for
    ``tensorboard --logdir runs``."""

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120, filename_suffix=""):
        if not log_dir:
            log_dir = os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname()
                                   + comment)
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue, self.flush_secs, self.filename_suffix = max_queue, flush_secs, filename_suffix
        self.file_writer = self.all_writers = None
        self._get_file_writer()
        # torch's default histogram bins: +-1e-12 * 1.1^k up to 1e20, and 0
        buckets = []
        v = 1e-12
        while v < 1e20:
            buckets.append(v)
            v *= 1.1
        self.default_bins = [-b for b in reversed(buckets)] + [0] + buckets

    def _get_file_writer(self):
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = _FileWriter(self.log_dir, self.max_queue, self.flush_secs, self.filename_suffix)
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            if self.purge_step is not None:
                self.file_writer.add_event(event_pb2.Event(step=self.purge_step, file_version="brain.Event:2"))
                self.file_writer.add_event(event_pb2.Event(
                    step=self.purge_step, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
                self.purge_step = None
        return self.file_writer

    def get_logdir(self):
        return self.log_dir

    # -- scalars ---------------------------------------------------------------------------
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        """One value (a number or a one-element tensor) of the series ``tag`` at ``global_step``."""
        self._get_file_writer().add_summary(_scalar(tag, scalar_value, new_style, double_precision), global_step,
                                            walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Several series in one chart: each goes to its own run, ``<log_dir>/<main_tag>_<tag>``."""
        walltime = time.time() if walltime is None else walltime
        logdir = self._get_file_writer().get_logdir()
        for tag, value in tag_scalar_dict.items():
            run = logdir + "/" + main_tag.replace("/", "_") + "_" + tag
            writer = self.all_writers.get(run)
            if writer is None:
                writer = self.all_writers[run] = _FileWriter(run, self.max_queue, self.flush_secs,
                                                             self.filename_suffix)
            writer.add_summary(_scalar(main_tag, value), global_step, walltime)

    # -- histograms ------------------------------------------------------------------------
    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None, max_bins=None):
        """A histogram of ``values``; ``bins`` as numpy.histogram's, or 'tensorflow' for torch's default bins."""
        if isinstance(bins, str) and bins == "tensorflow":
            bins = self.default_bins
        array = make_np(values).astype(float)
        self._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, histo=_histogram(
            array, bins, max_bins))]), global_step, walltime)

    def add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts,
                          global_step=None, walltime=None):
        """A histogram given by its statistics and buckets."""
        if len(bucket_limits) != len(bucket_counts):
            raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
        histo = HistogramProto(min=min, max=max, num=num, sum=sum, sum_squares=sum_squares,
                               bucket_limit=list(bucket_limits), bucket=list(bucket_counts))
        self._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, histo=histo)]), global_step,
                                            walltime)

    # -- images ----------------------------------------------------------------------------
    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        """One image: floats in [0, 1] or uint8 in [0, 255], laid out as ``dataformats`` says."""
        self._get_file_writer().add_summary(_image(tag, img_tensor, dataformats), global_step, walltime)

    def add_images(self, tag, img_tensor, global_step=None, walltime=None, dataformats="NCHW"):
        """A batch of images, shown as one grid of up to 8 columns."""
        self._get_file_writer().add_summary(_image(tag, img_tensor, dataformats), global_step, walltime)

    def add_figure(self, tag, figure, global_step=None, close=True, walltime=None):
        """A matplotlib figure (or a list of them) as an image."""
        if isinstance(figure, list):
            self.add_images(tag, numpy.stack([_figure_to_chw(f, close) for f in figure]), global_step, walltime)
        else:
            self.add_image(tag, _figure_to_chw(figure, close), global_step, walltime)

    # -- text ------------------------------------------------------------------------------
    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """A string, shown in TensorBoard's Text tab (Markdown)."""
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()))
        tensor = TensorProto(dtype="DT_STRING", string_val=[text_string.encode("utf_8")],
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        summary = Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=metadata, tensor=tensor)])
        self._get_file_writer().add_summary(summary, global_step, walltime)

    # -- graph -----------------------------------------------------------------------------
    def add_graph(self, model, input_to_model=None, verbose=False, use_strict_trace=True):
        """The graph of one call ``model(input_to_model)`` (a tensor or a tuple of them): the
        autograd graph of the outputs, each op under the innermost module that ran it, the
        parameters under their module, the inputs and outputs as 'IO Node's."""
        graph = _model_graph(model, input_to_model)
        self._get_file_writer().add_event(event_pb2.Event(graph_def=graph.SerializeToString()))

    # -- the file --------------------------------------------------------------------------
    def flush(self):
        """Write what is pending to disk."""
        if self.all_writers is None:
            return
        for writer in self.all_writers.values():
            writer.flush()

    def close(self):
        """Flush and close every event file (a later add_* opens a new one)."""
        if self.all_writers is None:
            return
        for writer in self.all_writers.values():
            writer.flush()
            writer.close()
        self.file_writer = self.all_writers = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()


# -- summaries --------------------------------------------------------------------------------

def _scalar(tag, value, new_style=False, double_precision=False):
    array = make_np(value).squeeze()
    if array.ndim != 0:
        raise AssertionError(f"Tensor should contain one element (0 dimensions). Was given size: {array.size} "
                             f"and {array.ndim} dimensions.")
    scalar = float(array)
    if not new_style:
        return Summary(value=[Summary.Value(tag=tag, simple_value=scalar)])
    tensor = (TensorProto(double_val=[scalar], dtype="DT_DOUBLE") if double_precision
              else TensorProto(float_val=[scalar], dtype="DT_FLOAT"))
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])


def _histogram(values, bins, max_bins=None):
    """The HistogramProto TensorBoard expects: the occupied range of numpy.histogram's bins
    (with an empty bin on the left), subsampled to ``max_bins``."""
    if values.size == 0:
        raise ValueError("The input has no element.")
    values = values.reshape(-1)
    counts, limits = numpy.histogram(values, bins=bins)
    if max_bins is not None and len(counts) > max_bins:
        step = len(counts) // max_bins
        if len(counts) % step:
            counts = numpy.pad(counts, (0, step - len(counts) % step))
        counts = counts.reshape(-1, step).sum(axis=-1)
        limits = numpy.concatenate([limits[:-1:step], limits[-1:]])
    occupied = numpy.cumsum(counts > 0)
    start, end = numpy.searchsorted(occupied, [0, occupied[-1] - 1], side="right")
    start, end = int(start), int(end) + 1
    counts = counts[start - 1:end] if start > 0 else numpy.concatenate([[0], counts[:end]])
    limits = limits[start:end + 1]
    if counts.size == 0 or limits.size == 0:
        raise ValueError("The histogram is empty.")
    return HistogramProto(min=values.min(), max=values.max(), num=len(values), sum=values.sum(),
                          sum_squares=values.dot(values), bucket_limit=limits.tolist(), bucket=counts.tolist())


def _to_hwc(array, dataformats):
    """An image array laid out as ``dataformats`` (NCHW, CHW, HWC, HW, ...) as H x W x C
    (a batch as one grid of up to 8 columns; one channel repeated to three)."""
    if len(set(dataformats)) != len(dataformats):
        raise AssertionError(f"You can not use the same dimension shorthand twice. input_format: {dataformats}")
    if array.ndim != len(dataformats):
        raise AssertionError(f"size of input tensor and input format are different. tensor shape: "
                             f"{array.shape}, input_format: {dataformats}")
    dataformats = dataformats.upper()
    if len(dataformats) == 4:
        batch = array.transpose([dataformats.find(c) for c in "NCHW"])
        if batch.shape[1] == 1:
            batch = numpy.concatenate([batch] * 3, 1)
        if batch.shape[1] != 3:
            raise AssertionError("Input should be a 4D numpy array with 3 channels")
        count, _, height, width = batch.shape
        columns = min(count, 8)
        rows = -(-count // columns)
        canvas = numpy.zeros((3, height * rows, width * columns), dtype=batch.dtype)
        for i in range(count):
            y, x = divmod(i, columns)
            canvas[:, y * height:(y + 1) * height, x * width:(x + 1) * width] = batch[i]
        return canvas.transpose(1, 2, 0)
    if len(dataformats) == 3:
        image = array.transpose([dataformats.find(c) for c in "HWC"])
        return numpy.concatenate([image] * 3, 2) if image.shape[2] == 1 else image
    if len(dataformats) == 2:
        return numpy.stack([array.transpose([dataformats.find(c) for c in "HW"])] * 3, 2)
    raise AssertionError(f"dataformats must have 2, 3 or 4 letters, got {dataformats!r}")


def _image(tag, value, dataformats):
    try:
        from PIL import Image  # tensorboard's own dependency; only images need it
    except ImportError:
        raise ImportError("add_image needs pillow (pip install pillow)") from None
    array = _to_hwc(make_np(value), dataformats)
    scale = 1 if array.dtype == numpy.uint8 else 255
    array = (array.astype(numpy.float32) * scale).clip(0, 255).astype(numpy.uint8)
    height, width, channels = array.shape
    buffer = io.BytesIO()
    Image.fromarray(array).resize((width, height), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def _figure_to_chw(figure, close):
    # matplotlib is the caller's (they pass a figure): imported when one is drawn
    import matplotlib.backends.backend_agg as backend_agg
    import matplotlib.pyplot as plt  # (as the line above)
    canvas = backend_agg.FigureCanvasAgg(figure)
    canvas.draw()
    width, height = figure.canvas.get_width_height()
    image = numpy.frombuffer(canvas.buffer_rgba(), dtype=numpy.uint8).reshape(height, width, 4)[:, :, :3]
    if close:
        plt.close(figure)
    return numpy.moveaxis(image, 2, 0)


# -- the graph --------------------------------------------------------------------------------

def _node(name, op, inputs, shape=None, dtype=None):
    attr = {}
    if dtype is not None:
        attr["dtype"] = AttrValue(s=str(dtype).encode("utf_8"))
    if shape is not None:
        dims = [TensorShapeProto.Dim(size=int(d)) for d in shape]
        attr["_output_shapes"] = AttrValue(list=AttrValue.ListValue(shape=[TensorShapeProto(dim=dims)]))
    return NodeDef(name=name, op=op, input=list(inputs), attr=attr)


def _tensors(value):
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _module_scopes(model):
    """id(module) -> its scope in torch's style: 'Net/Sequential[body]/Linear[0]'."""
    by_name = {}
    for name, module in model.named_modules():
        parent, _, last = name.rpartition(".")
        by_name[name] = (type(module).__name__ if not name
                         else by_name[parent] + f"/{type(module).__name__}[{last}]")
    return {id(model.get_submodule(name)) if name else id(model): scope for name, scope in by_name.items()}


def _postorder(roots):
    """The autograd nodes reached from ``roots``, each after the nodes it reads (no recursion)."""
    order, seen, stack = [], set(), [(root, False) for root in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child, _ in reversed(node.next_functions)
                     if child is not None and id(child) not in seen)
    return order


def _model_graph(model, inputs):
    """GraphDef of one forward call: every autograd node reached from the outputs, named
    '<module scope>/<op>_<k>'; parameters and inputs are the graph's leaves."""
    inputs = inputs if isinstance(inputs, (tuple, list)) else (() if inputs is None else (inputs,))
    inputs = tuple(t.detach().requires_grad_(t.is_floating_point()) if isinstance(t, Tensor) else t
                   for t in inputs)
    paths = _module_scopes(model)
    scopes = {}                     # id(autograd node) -> the scope of the innermost module that made it

    def claim(module, args, output):
        # children's hooks run before their parent's: a node keeps the innermost scope
        stop = {id(t.grad_fn) for t in _tensors(args) if t.grad_fn is not None}
        stack = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or id(node) in scopes or id(node) in stop or isinstance(node, AccumulateGrad):
                continue
            scopes[id(node)] = paths[id(module)]
            stack.extend(child for child, _ in node.next_functions)

    handles = [m.register_forward_hook(claim) for m in model.modules()]
    try:
        with enable_grad():
            outputs = _tensors(model(*inputs))
    finally:
        for handle in handles:
            handle.remove()
    root = paths[id(model)]
    leaf_names = {id(p): paths[id(module)] + "/" + name for module in model.modules()
                  for name, p in module.named_parameters(recurse=False)}
    for i, t in enumerate(t for t in inputs if isinstance(t, Tensor)):
        leaf_names[id(t)] = f"input/input.{i}"
    heads = [t.gradient_edge()[0] for t in outputs if t.requires_grad]
    nodes, named, counters = [], {}, {}
    for node in _postorder(heads):
        if isinstance(node, AccumulateGrad):
            leaf = node.variable
            name = leaf_names.get(id(leaf)) or f"{root}/leaf.{len(named)}"
            nodes.append(_node(name, "IO Node" if name.startswith("input/") else "Parameter", [], leaf.shape,
                               leaf.dtype))
        else:
            key = f"{scopes.get(id(node), root)}/{node.name()}"
            counters[key] = counters.get(key, -1) + 1
            name = f"{key}_{counters[key]}"
            nodes.append(_node(name, node.name(), [named[id(c)] for c, _ in node.next_functions if c is not None]))
        named[id(node)] = name
    for i, t in enumerate(outputs):
        source = [named[id(t.gradient_edge()[0])]] if t.requires_grad else []
        nodes.append(_node(f"output/output.{i}", "IO Node", source, t.shape, t.dtype))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))
