"""Stable topological ordering of plan steps."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from provisioner.errors import FailedPrecondition


def stable_toposort(count: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    """Order nodes ``0..count-1`` so that every edge (a, b) has a before b.

    Among the nodes that are ready, the lowest number goes first, so the result follows
    the order the nodes were created in wherever the edges allow.
    """
    successors: list[set[int]] = [set() for _ in range(count)]
    indegree = [0] * count
    for before, after in set(edges):
        if after not in successors[before]:
            successors[before].add(after)
            indegree[after] += 1
    ready = [n for n in range(count) if indegree[n] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for nxt in successors[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, nxt)
    if len(order) != count:
        raise FailedPrecondition("the plan's steps depend on each other in a cycle")
    return order
