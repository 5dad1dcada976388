"""Policy: the model (model.py), NetworkPolicy translation (netpol.py), the compiler into the
data path's trie (compile.py) and the node's set of policies (engine.py)."""
