"""Validation: the checks every written model gets, the mask oracle, output comparison and latency."""
