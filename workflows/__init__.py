"""Use cases: the unit of work and the functions that move cases (one transaction each)."""
