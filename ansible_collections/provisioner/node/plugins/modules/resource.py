#!/usr/bin/python
# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""provisioner.node.resource: declare or remove one provisioner resource per task.

Thin on purpose, like provisioner.node.manifest: options, documentation, the mapping to
exit_json / fail_json; the rest is ``provisioner.ansible_resource`` on the managed node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: resource
short_description: Declare or remove one provisioner resource (a cell, an executable, ...)
description:
  - Declares one resource (O(state=present)) or removes it (O(state=absent)) in one task;
    validates it, compares it with what the node runs, plans and applies.
  - Each resource is its own manifest set, named C(<kind lowercase>.<name>) with C(/)
    replaced by C(.) (C(cell.web.cache), C(executable.api)); it is returned as
    RV(manifest_set). O(state=absent) removes exactly this resource. A resource that
    another manifest set declares (a M(provisioner.node.manifest) task, say) is refused, and
    nothing is changed.
  - The resource may refer to resources the node already has, of any manifest set
    (declared by earlier tasks), with an executable's C(cell), a nested cell's parent or
    C(dependsOn). Order the tasks so that what is referred to comes first, and remove in
    the reverse order.
  - The convenient path. M(provisioner.node.manifest), one task for a whole manifest set, is the
    fast one (Ansible's overhead is per task).
  - Check mode compiles the plan and reports what would change; it takes no lock and
    changes nothing. With C(--diff), the resource is returned as it is on the node
    (before) and as declared (after).
version_added: "0.1.0"
author:
  - Provisioner maintainers (@provisioner)
options:
  kind:
    description:
      - The kind of the resource, as in a manifest's C(kind).
    type: str
    required: true
    choices: [Cell, Executable, Pod, Driver, PersistentExecutable]
  name:
    description:
      - The resource's name, as in a manifest's C(metadata.name) (cells nest with C(/),
        C(web/cache)).
    type: str
    required: true
  spec:
    description:
      - Exactly a manifest's C(spec) (lowerCamelCase or snake_case keys), validated by the
        same JSON Schema; an error names its path (C(spec.cpu.weight)) and fails the task
        before the node is touched.
      - A Driver's C(source) must be an absolute path on the node.
      - Ignored with O(state=absent).
    type: dict
    default: {}
  labels:
    description:
      - The resource's labels, as in a manifest's C(metadata.labels).
    type: dict
  state:
    description:
      - C(present) makes the node have the resource as declared.
      - C(absent) removes it (destroys its manifest set).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - provisioner.node.node
  - provisioner.node.node.action_group
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - C(changed) is true exactly when the plan had steps and at least one of them succeeded.
  - Removing a cell that a resource of another manifest set runs in is refused; remove
    that resource first.
seealso:
  - module: provisioner.node.manifest
  - module: provisioner.node.info
"""

EXAMPLES = r"""
- name: A cell
  provisioner.node.resource:
    kind: Cell
    name: web
    spec: {cpu: {weight: 200, max: 500000}}

- name: An executable in it
  provisioner.node.resource:
    kind: Executable
    name: api
    spec: {cell: web, command: "python3 -m http.server 8080", restartPolicy: on-failure}
    labels: {team: shop}

- name: Through a remote daemon with mutual TLS
  provisioner.node.resource:
    kind: Cell
    name: web/cache
    spec: {cpu: {weight: 100}}
    target: node1.lab:7443
    tls_ca: /etc/provisioner/pki/ca.pem
    tls_cert: /etc/provisioner/pki/ci-bot.pem
    tls_key: /etc/provisioner/pki/ci-bot.key

- name: Remove the executable (then the cell, in a later task)
  provisioner.node.resource:
    kind: Executable
    name: api
    state: absent
"""

RETURN = r"""
manifest_set:
  description: The resource's own manifest set.
  returned: success or a failed apply
  type: str
  sample: executable.api
plan:
  description: The plan's steps as objects, like RV(provisioner.node.manifest#module:plan).
  returned: success or a failed apply
  type: list
  elements: dict
  sample:
    - {step: 0, kind: Cell, name: web, action: update, change: update,
       reason: "spec changed: cpu.weight 200 -> 300 (in place)", requires: []}
plan_text:
  description: The plan as C(provisioner plan) prints it, one line per item.
  returned: success or a failed apply
  type: list
  elements: str
  sample:
    - "Plan: 1 to update, 0 unchanged (node generation 10, manifest set 'cell.web')."
    - "  #0      ~ update   Cell/web: spec changed: cpu.weight 200 -> 300 (in place)"
actions:
  description:
    - One object per step performed (in check mode, per step that would be performed),
      as in RV(plan), with its C(result) (succeeded, failed, skipped or planned) and,
      when it failed or was skipped, C(message).
  returned: success or a failed apply
  type: list
  elements: dict
  sample:
    - {step: 0, kind: Executable, name: api, action: start, change: create,
       reason: created, requires: [], result: succeeded}
actions_text:
  description: RV(actions) as text, one line each.
  returned: success or a failed apply
  type: list
  elements: str
  sample: ["start Executable/api: created"]
summary:
  description: How many resources were created, updated, replaced, deleted, left
    unchanged, failed or skipped, and the node generation afterwards (in check mode,
    what applying would give).
  returned: success or a failed apply
  type: dict
  sample: {created: 1, updated: 0, replaced: 0, deleted: 0, unchanged: 0, failed: 0,
           skipped: 0, generation: 11}
diff:
  description: The resource as the node has it and as declared (environment values are
    never shown).
  returned: with C(--diff)
  type: dict
  sample: {before: "Cell/web:\n  cpu.weight: 200\n", after: "Cell/web:\n  cpu.weight: 300\n"}
errors:
  description: Every validation error, as the JSON path and the message.
  returned: when the resource is invalid
  type: list
  elements: str
  sample: ["spec.cpu.weight: 0 is less than the minimum of 1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.provisioner.node.plugins.module_utils.node import (
    NODE_REQUIRED_TOGETHER,
    node_argument_spec,
    require_provisioner,
    run_manager,
)

ARGUMENT_SPEC = node_argument_spec(
    kind=dict(type="str", required=True,
              choices=["Cell", "Executable", "Pod", "Driver", "PersistentExecutable"]),
    name=dict(type="str", required=True),
    spec=dict(type="dict", default={}),
    labels=dict(type="dict"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_together=NODE_REQUIRED_TOGETHER,
    )
    require_provisioner(module, "to validate, plan and apply resources")

    from provisioner.ansible_resource import ResourceManager, ResourceOptions

    run_manager(module, lambda: ResourceManager(
        ResourceOptions.from_params(module.params), check_mode=module.check_mode,
        want_diff=module._diff))


if __name__ == "__main__":
    main()
