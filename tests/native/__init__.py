"""Native tier: the ring core's C code, built under sanitizers and driven from Python.

A package (rather than loose modules) so that its conftest and helper modules cannot clash
with another tier's by name, for pytest and for mypy alike.
"""
