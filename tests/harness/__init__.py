"""Helpers that build what the tests run against: clusters of cores, of in-process nodes
and of real processes, and a disk model for power losses."""
