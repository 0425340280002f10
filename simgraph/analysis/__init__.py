"""Analysing results as graphs and curves: capacity sweeps, plots (networkx export lives in interop)."""

from .capacity import capacity, sweep

__all__ = ["sweep", "capacity"]
