#!/usr/bin/python
# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""provisioner.node.info: what a node runs and its facts, as data; changes nothing.

Thin on purpose: the reading lives in ``provisioner.ansible_info`` on the managed node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: info
short_description: What a provisioner node runs, and its facts
description:
  - Returns every resource the provisioner manages on the node (cells, executables,
    pods, drivers, persistent executables) with its manifest set and live status, and
    the node's facts (id, generation, cgroup version and driver, daemon or local, the
    writer lock's state).
  - Reads only; never changes anything, and runs the same in check mode. On a node the
    provisioner has never used it reports an empty node and creates nothing (no state
    directory, database or cgroup root).
version_added: "0.1.0"
author:
  - Provisioner maintainers (@provisioner)
options:
  manifest_set:
    description: Only the resources of this manifest set (the node facts are the node's).
    type: str
extends_documentation_fragment:
  - provisioner.node.node
  - provisioner.node.node.action_group
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only, so check mode changes nothing either.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: provisioner.node.manifest
  - module: provisioner.node.resource
"""

EXAMPLES = r"""
- name: What the node runs
  provisioner.node.info:
  register: node

- name: Fail when an executable of the web set is not running
  ansible.builtin.assert:
    that: node.resources.executables | rejectattr('state', 'eq', 'running') | list | length == 0

- name: One manifest set, through a daemon over mutual TLS
  provisioner.node.info:
    manifest_set: web
    target: "{{ inventory_hostname }}:7443"
    tls_ca: pki/ca.pem
    tls_cert: pki/ci-bot.pem
    tls_key: pki/ci-bot.key
  delegate_to: localhost
"""

RETURN = r"""
node:
  description: The node's facts.
  returned: always
  type: dict
  contains:
    node_id:
      description: The stable identity of the node's state.
      type: str
    node_name:
      description: The node's host name.
      type: str
    generation:
      description: The node's state generation (every change raises it).
      type: int
    cgroup_version:
      description: The cgroup version cells' CPU limits live on, V(1) or V(2).
      type: int
    cgroup_driver:
      description: The provisioner's cgroup driver, C(CgroupV1Driver) or C(CgroupV2Driver).
      type: str
    cgroup_hybrid:
      description: Whether the host mixes v1 controllers with a v2 mount (local only).
      type: bool
      returned: when local
    mode:
      description: V(daemon) when a node daemon answered, V(local) when the machine was
        read directly.
      type: str
    target:
      description: The daemon asked.
      type: str
      returned: with a daemon
    state_dir:
      description: The state directory read.
      type: str
      returned: when local
    cgroup_root:
      description: The cgroup root read.
      type: str
      returned: when local
    lock:
      description: The writer lock, C(state) V(free), V(held) or V(unknown) (a daemon
        does not report it) and C(holder), who holds it.
      type: dict
    resources:
      description: How many resources the node has (of every manifest set).
      type: int
  sample: {node_id: 3f2a..., node_name: node1, generation: 12, cgroup_version: 1,
           cgroup_driver: CgroupV1Driver, cgroup_hybrid: true, mode: local,
           state_dir: /var/lib/provisioner, cgroup_root: provisioner,
           lock: {state: free, holder: null}, resources: 6}
resources:
  description:
    - The resources, by kind, C(cells), C(executables), C(pods), C(drivers) and
      C(persistent_executables); each a list of objects with C(kind), C(name),
      C(manifest_set), C(present), C(state) (running, exited, backoff, stopped,
      pending, or failed - a container runc could not start - for processes, present
      or missing otherwise), C(drift) (a list), C(labels)
      and for processes C(pid), C(restarts), C(exit_code), C(exit_signal) and, once
      exited, C(exit).
  returned: always
  type: dict
  sample:
    cells: [{kind: Cell, name: web, manifest_set: node, present: true, state: present,
             drift: [], labels: {}}]
    executables: [{kind: Executable, name: api, manifest_set: node, present: true,
                   state: running, pid: 4242, restarts: 0, exit_code: null,
                   exit_signal: null, drift: [], labels: {team: shop}}]
    pods: []
    drivers: []
    persistent_executables: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.provisioner.node.plugins.module_utils.node import (
    NODE_REQUIRED_TOGETHER,
    node_argument_spec,
    require_provisioner,
    run_manager,
)

ARGUMENT_SPEC = node_argument_spec(manifest_set=dict(type="str"))


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_together=NODE_REQUIRED_TOGETHER,
    )
    require_provisioner(module, "to read the node")

    from provisioner.ansible_info import InfoOptions, InfoReader

    run_manager(module, lambda: InfoReader(InfoOptions.from_params(module.params)))


if __name__ == "__main__":
    main()
