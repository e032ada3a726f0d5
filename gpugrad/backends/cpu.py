"""torch.backends.cpu: what the CPU offers NumPy's compiled loops."""


def get_cpu_capability():
    """The widest vector instruction set NumPy's loops use on this CPU, in
    torch's words: 'AVX512', 'AVX2' or 'DEFAULT'."""
    features = _cpu_features()
    if all(features.get(name) for name in ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL")):
        return "AVX512"
    if features.get("AVX2") and features.get("FMA3"):
        return "AVX2"
    return "DEFAULT"


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # NumPy 2 (private, hence guarded)
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # NumPy 1.26
        except ImportError:
            return {}
    return dict(__cpu_features__)

