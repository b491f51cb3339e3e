# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""The options every module of provisioner.node shares: which node to act on and how."""

from __future__ import annotations


class ModuleDocFragment:
    """``extends_documentation_fragment: [provisioner.node.node]`` documents the node
    options; ``provisioner.node.node.action_group`` the module_defaults group."""

    DOCUMENTATION = r"""
options:
  target:
    description:
      - The node daemon to act through, C(unix:///path) or C(host:port) (mutual TLS with
        O(tls_ca), O(tls_cert) and O(tls_key)).
      - Default (also from the environment variable E(PROVISIONER_TARGET) of the managed
        node) the daemon at C(unix:///run/provisioner/provisioner.sock) if it answers
        within 2 seconds, else the managed node directly (which needs root).
      - "With C(delegate_to: localhost), name each host's daemon, for example
        C({{ inventory_hostname }}:7443)."
    type: str
  tls_ca:
    description: CA certificate that signed the daemon's (C(host:port) targets).
    type: path
  tls_cert:
    description: This client's certificate for mutual TLS; goes with O(tls_key).
    type: path
  tls_key:
    description: This client's private key for mutual TLS; goes with O(tls_cert).
    type: path
  state_dir:
    description:
      - State directory when acting on the machine directly (environment variable
        E(PROVISIONER_STATE_DIR)). A value other than the default means this machine
        with that state, so the default daemon is then not used. Ignored with a daemon.
    type: path
    default: /var/lib/provisioner
  cgroup_root:
    description:
      - Cgroup subtree of the cells when acting on the machine directly (environment
        variable E(PROVISIONER_CGROUP_ROOT)); like O(state_dir), a value other than the
        default means this machine directly. Ignored with a daemon.
    type: str
    default: provisioner
  lock_timeout:
    description:
      - Seconds to wait for another apply on this machine to finish before failing with
        who holds the lock. A daemon runs one apply at a time by itself.
    type: float
    default: 10.0
requirements:
  - The C(provisioner) Python package in the managed node's Python; point
    C(ansible_python_interpreter) at the virtualenv it is installed in
    (C(/opt/provisioner/bin/python) after the C(provisioner.node.daemon) role).
notes:
  - The modules run on the managed node (or, with C(delegate_to), on the host delegated
    to) and talk to the node through the C(provisioner) library there.
"""

    ACTION_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/provisioner.node.node) in C(module_defaults) to set the
      shared options (O(target), O(tls_ca), O(tls_cert), O(tls_key), ...) once.
    support: full
    membership:
      - provisioner.node.node
"""
