"""Cooperative games with known Shapley values, shared by the estimator tests (value functions of a batch of
boolean coalition masks (B, n) -> (B,))."""

from __future__ import annotations

import numpy as np


def additive(weights, constant=0.0):
    """v(S) = Σ_{i∈S} w_i + c: the Shapley value is w."""
    w = np.asarray(weights, dtype=float)
    return lambda masks: masks @ w + constant


def pairwise(weights, interactions):
    """v(S) = Σ w_i + Σ_{i<j∈S} J_ij: the Shapley value is w_i + ½ Σ_j J_ij."""
    w, J = np.asarray(weights, dtype=float), np.triu(np.asarray(interactions, dtype=float), 1)
    return lambda masks: masks @ w + np.einsum("ki,ij,kj->k", masks.astype(float), J, masks.astype(float))
