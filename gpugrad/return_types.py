"""The named (values, indices) pairs that max/min/sort/topk/kthvalue/median
along a dim return: tuples with field names, printed as torch prints its
``torch.return_types``."""

import collections


def _structseq(name, fields=("values", "indices")):
    base = collections.namedtuple(name, fields)

    def __repr__(self):
        return f"gpugrad.return_types.{name}(\n" + ",\n".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

    return type(name, (base,), {"__slots__": (), "__repr__": __repr__, "__module__": __name__,
                                "__doc__": f"What ``{name}`` returns: ({', '.join(fields)})."})


max = _structseq("max")
min = _structseq("min")
sort = _structseq("sort")
topk = _structseq("topk")
kthvalue = _structseq("kthvalue")
median = _structseq("median")
histogram = _structseq("histogram", ("hist", "bin_edges"))
linalg_slogdet = _structseq("linalg_slogdet", ("sign", "logabsdet"))
slogdet = _structseq("slogdet", ("sign", "logabsdet"))
linalg_qr = _structseq("linalg_qr", ("Q", "R"))
linalg_svd = _structseq("linalg_svd", ("U", "S", "Vh"))
linalg_eigh = _structseq("linalg_eigh", ("eigenvalues", "eigenvectors"))
