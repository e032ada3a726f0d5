"""The benchmark suite runs end to end (--quick): no timing assertions."""

import json

import pytest

from benchmarks.__main__ import main


def test_quick_suite_writes_json_table_and_plots(tmp_path, capsys):
    record = main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    groups = {row["group"] for row in record["results"]}
    assert groups == {"losses", "linear_ce", "gpt", "softmax", "elementwise", "matmul", "mlp", "overhead"}
    linear_ce = {row["impl"]: row for row in record["results"] if row["group"] == "linear_ce"}
    assert linear_ce["gpugrad"]["peak_bytes"] < linear_ce["torch"]["peak_bytes"]
    assert record["ceilings"]["copy_bytes_per_s"] > 0 and record["ceilings"]["matmul_flops_per_s"] > 0
    assert all(row["seconds"] > 0 for row in record["results"])
    impls = {row["impl"] for row in record["results"]}
    assert {"gpugrad", "torch", "torch (1 thread)", "array code, fewest passes"} <= impls
    assert all(row["q1"] <= row["seconds"] <= row["q3"] for row in record["results"])
    assert "Cost per graph node" in out and "gpugrad / torch (1 thread)" in out
    losses = [r for r in record["results"] if r["group"] == "losses"]
    assert all("gb_per_s" in r and "pct_of_copy" in r for r in losses)
    assert all("gpugrad_speedup" in r for r in losses if r["impl"] != "gpugrad")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith(".json") for name in written) and any(name.endswith(".md") for name in written)
    assert any(name.endswith("-time.png") for name in written)
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["results"] == record["results"]
    assert "| group | case |" in out
    assert saved["complete"] and saved["errors"] == []


def test_a_failing_implementation_or_case_is_reported_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    """A baseline this torch lacks (or a failing compile) loses its row, a case that fails
    to set up ends its group, and everything else is still measured and written."""
    import torch

    from benchmarks import __main__ as suite_main
    from benchmarks.suite import Case

    def broken_group(machine, quick, compile_torch):
        yield Case("broken", "works", "1", "float32", {"gpugrad": (lambda: None, "cpu")})
        raise RuntimeError("no such shape")

    monkeypatch.setitem(suite_main.GROUPS, "broken", broken_group)
    monkeypatch.delattr(torch.nn, "LinearCrossEntropyOptions")
    record = main(["--quick", "--only", "linear_ce", "broken", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    impls = {(row["group"], row["impl"]) for row in record["results"]}
    assert {("linear_ce", "gpugrad"), ("linear_ce", "torch"), ("broken", "gpugrad")} <= impls
    assert ("linear_ce", "torch linear_cross_entropy") not in impls
    errors = {(e["group"], e.get("impl")): e["error"] for e in record["errors"]}
    assert "has no chunked F.linear_cross_entropy" in errors["linear_ce", "torch linear_cross_entropy"]
    assert "RuntimeError: no such shape" in errors["broken", None]
    assert "Left out (the error each raised)" in out and "no such shape" in out
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["complete"] and len(saved["errors"]) == 2


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_kernel_launch_counting_reads_the_profilers_trace():
    """The counter counts the trace's kernel events (CUPTI's, whoever launched them) and
    nothing else; on this machine's torch the profiler runs and finds no kernels."""
    import torch

    from benchmarks import launches, report
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "cross_entropy_forward<float>"},
        {"ph": "X", "cat": "kernel", "name": "cupy_multiply__float_float_float"},
        {"ph": "X", "cat": "kernel", "name": "cross_entropy_forward<float>"},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel"},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)"},
        {"ph": "f", "cat": "kernel", "name": "flow end"}]}
    assert launches.kernels_in_trace(trace) == {"cross_entropy_forward<float>": 2,
                                                "cupy_multiply__float_float_float": 1}
    calls = []
    total, kernels = launches.per_call(torch, lambda: calls.append(torch.ones(3).sum()), lambda: None, calls=4)
    assert len(calls) == 5 and total == 0 and kernels == {}         # CPU work: no kernels
    record = {"results": [{"case": "cross_entropy", "impl": "gpugrad", "launches_per_call": 2.0,
                           "kernels": {"cross_entropy_forward<float>": 1.0, "cross_entropy_backward<float>": 1.0}},
                          {"case": "cross_entropy", "impl": "torch", "launches_error": "RuntimeError: no CUPTI"}]}
    table = "\n".join(report.launch_counts(record))
    assert ("| cross_entropy | gpugrad | 2 | cross_entropy_forward<float> x1; cross_entropy_backward<float> x1 |"
            in table)
    assert "not counted: RuntimeError: no CUPTI" in table
