"""The agent's view of Kubernetes: the only package in the product that imports `kubernetes`.

`ClusterState` (cluster.py) is what the rest of the agent uses; `ListWatch` (watch.py) is the
list-then-watch loop under it.
"""

from agent.k8s.cluster import ClusterState, KubeConfigError, NodeInfo, PodInfo, kube_client
from agent.k8s.watch import BackoffPolicy, KubeError, ListWatch, WatchStats

__all__ = ["BackoffPolicy", "ClusterState", "KubeConfigError", "KubeError", "ListWatch",
           "NodeInfo", "PodInfo", "WatchStats", "kube_client"]
