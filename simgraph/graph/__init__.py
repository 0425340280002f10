"""The compiled network (layer 1): the data model and one module per layout kind.

- :mod:`.model`: :class:`Population`, :class:`Projection`, :class:`Graph` and its primitives;
- :mod:`.layout`: the layout plan, which block runs which projections;
- :mod:`.sparse`: all sparse synapses as one CSR block (:mod:`.csr` its index tables and
  kernels, :mod:`.autograd` their custom backward passes);
- :mod:`.dense`: dense projections as broadcasting views and matrix products.
"""

from .model import REDUCTIONS, Graph, Population, Projection, degrees, is_hashable

__all__ = ["REDUCTIONS", "Graph", "Population", "Projection", "degrees", "is_hashable"]
