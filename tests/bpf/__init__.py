"""BPF tier: the XDP programs under BPF_PROG_TEST_RUN and attached to real interfaces.

A package, like tests/native, so that its conftest and helper modules cannot clash with another
tier's by name, for pytest and for mypy alike; packet builders come from native.packets.
"""
