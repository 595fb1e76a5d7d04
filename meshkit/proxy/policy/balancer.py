"""Round robin over a cluster's endpoints (pure; state survives config swaps)."""

from __future__ import annotations

from meshkit.proxy.config import Cluster, Endpoint


class RoundRobin:
    """Picks endpoints of each cluster in turn.

    The position is kept per cluster name, so a config update that adds or
    removes an endpoint does not restart every cluster at its first endpoint.
    """

    def __init__(self) -> None:
        self._next_index: dict[str, int] = {}

    def pick(self, cluster: Cluster) -> Endpoint | None:
        endpoints = cluster.endpoints
        if not endpoints:
            return None
        index = self._next_index.get(cluster.name, 0) % len(endpoints)
        self._next_index[cluster.name] = index + 1
        return endpoints[index]

    def forget_except(self, cluster_names: set[str]) -> None:
        """Drop the positions of clusters no longer in the config."""
        for name in list(self._next_index):
            if name not in cluster_names:
                del self._next_index[name]
