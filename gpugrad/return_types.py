"""The named (values, indices) pairs that max/min/sort/topk/kthvalue/median
along a dim return: tuples with field names, printed as torch prints its
``torch.return_types``."""

import collections


def _structseq(name):
    base = collections.namedtuple(name, ["values", "indices"])

    def __repr__(self):
        return f"gpugrad.return_types.{name}(\nvalues={self.values!r},\nindices={self.indices!r})"

    return type(name, (base,), {"__slots__": (), "__repr__": __repr__, "__module__": __name__,
                                "__doc__": f"What ``{name}`` along a dim returns: (values, indices)."})


max = _structseq("max")
min = _structseq("min")
sort = _structseq("sort")
topk = _structseq("topk")
kthvalue = _structseq("kthvalue")
median = _structseq("median")
