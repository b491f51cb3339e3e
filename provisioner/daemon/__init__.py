"""The node daemon: every seed API and the provisioner's own API over gRPC.

The modules fall in three groups; a newcomer adding a call only touches the second.

Setting up and running the server (no API of its own):

- ``server.py`` - ``provisioner daemon``: the daemon lock, listeners, authorization,
  health, reflection, start (reconcile, start hook) and graceful stop;
- ``listen.py`` - the root-only unix socket and TCP with mutual TLS;
  ``authz.py`` - caller identities, roles and the interceptor; ``certs.py`` - the small
  certificate authority behind ``provisioner certs``;
- ``services.py`` - registers every servicer below on the server, and the start hook;
- ``context.py`` - what every servicer shares (configuration, the node layer, the
  local executor, the daemon's own log);
- ``status.py`` - domain errors -> gRPC status codes, in one place for every servicer.

The API handlers (servicers), one module per API package, each a thin adapter: protobuf
in (``provisioner.serde`` for the model's types), a call of the local executor or the
node layer (``provisioner.node``: the daemon itself never runs a process or touches
cgroups), protobuf out, errors left to ``status.handles_errors``:

- ``aurae_runtime.py`` - ``aurae.runtime.v0`` (cells, executables, pods);
- ``aurae_observe.py`` - ``aurae.observe.v0`` and first-generation ``observe.Observe``:
  log streams (not to be confused with ``node/runtime/observe.py``, which reads the node
  into a ``NodeState``);
- ``legacy.py`` - first-generation ``runtime.Runtime.Exec`` and ``schedule.*``;
- ``discovery.py`` - ``aurae.discovery.v0``; ``registry.py`` - the Atomix driver
  registry; ``rkt.py`` - the read-only rkt API (with ``rkt_match.py``, pure helpers, and
  ``rkt_pods.py``, pods as rkt shows them);
- ``node_service.py`` - ``provisioner.v1.NodeService``: GetState, Plan, Apply,
  GetLogs, ListImages, PruneImages (with ``state_cache.py``, GetState's answer shared
  while nothing changed).

In the package's layers (``docs/architecture.md``) the daemon sits below the entry points
and above the executors: it may import the executors, serde, the node facade and
everything below them, never the command line.
"""
