"""Weighting of the data term against the restraint term."""
