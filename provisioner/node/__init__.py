"""The operating-system layer: cgroups, namespaces, supervised processes, store, lock.

See docs/node-layer.md for the design.
"""
