"""Identity mining: uniqueness and leakage filters, negative conditions, ScoreMix pairs and
m-plets, and CKA between embedding spaces. Pure numpy / faiss (imported lazily), no Ray."""

from synthface_ray.mining.cka import linear_cka
from synthface_ray.mining.index import (
    MiningError,
    check_embeddings,
    check_same_dim,
    inner_product_index,
)
from synthface_ray.mining.negatives import NEGATIVE_STRATEGIES, negatives
from synthface_ray.mining.pairs import pair_distance, select_mplets, select_pairs
from synthface_ray.mining.uniqueness import FilterReport, leakage_mask, unique_filter

__all__ = [
    "NEGATIVE_STRATEGIES",
    "FilterReport",
    "MiningError",
    "check_embeddings",
    "check_same_dim",
    "inner_product_index",
    "leakage_mask",
    "linear_cka",
    "negatives",
    "pair_distance",
    "select_mplets",
    "select_pairs",
    "unique_filter",
]
