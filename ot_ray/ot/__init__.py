"""The batched optimal-transport core: entropic OT, Sinkhorn divergence, word pooling."""

from ot_ray.ot.costs import cost_matrix
from ot_ray.ot.divergence import empty_pairs, sinkhorn_divergence, uniform_masses
from ot_ray.ot.pooling import pool_words, word_ids_tensor
from ot_ray.ot.solver import OTResult, SolverLog, dual_value, entropic_ot, record_solver

__all__ = [
    "OTResult",
    "SolverLog",
    "cost_matrix",
    "dual_value",
    "empty_pairs",
    "entropic_ot",
    "pool_words",
    "record_solver",
    "sinkhorn_divergence",
    "uniform_masses",
    "word_ids_tensor",
]
