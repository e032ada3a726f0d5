"""save / load: state dicts as NumPy .npz files (filled in with nn)."""
def save(obj, f):
    raise NotImplementedError


def load(f, map_location=None):
    raise NotImplementedError
