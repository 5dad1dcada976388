"""The `ringlane` CNI plugin: spec conformance (unit), real plugin chains in namespaces (root)."""
