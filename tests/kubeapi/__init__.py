"""A Kubernetes API endpoint for tests (server.py) and its pytest fixtures (fixtures.py)."""
