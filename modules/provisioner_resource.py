#!/usr/bin/python
# Copyright: the provisioner authors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: declare or remove one provisioner resource per task.

Thin on purpose, like ``provisioner_manifest``: the options, their documentation and the
mapping to exit_json / fail_json live here; the rest lives in
``provisioner.ansible_resource`` (installed on the target with the provisioner).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: provisioner_resource
short_description: Declare or remove one provisioner resource (a cell, an executable, ...)
description:
  - Declares one resource (I(state=present)) or removes it (I(state=absent)) in one task;
    validates it, compares it with what the node runs, plans and applies.
  - Each resource is its own manifest set, named C(<kind lowercase>.<name>) with C(/)
    replaced by C(.) (C(cell.web.cache), C(executable.api)); it is returned as
    RV(manifest_set). I(state=absent) removes exactly this resource. A resource that
    another manifest set declares (a M(provisioner_manifest) task, say) is refused, and
    nothing is changed.
  - The resource may refer to resources the node already has, of any manifest set
    (declared by earlier tasks), with an executable's C(cell), a nested cell's parent or
    C(dependsOn). Order the tasks so that what is referred to comes first, and remove in
    the reverse order.
  - The convenient path. M(provisioner_manifest), one task for a whole manifest set, is the
    fast one (Ansible's overhead is per task).
  - Acts through the node daemon named by I(target); without it, through the daemon on
    the default unix socket when it answers, otherwise directly on the target machine
    (which needs root).
  - Check mode compiles the plan and reports what would change; it takes no lock and
    changes nothing. With C(--diff), the resource is returned as it is on the node
    (before) and as declared (after).
version_added: "0.1.0"
author:
  - Provisioner maintainers (@provisioner)
requirements:
  - The C(provisioner) Python package on the target (point C(ansible_python_interpreter)
    at the virtualenv it is installed in).
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
      - Ignored with I(state=absent).
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
  target:
    description:
      - A node daemon, C(unix:///path) or C(host:port) (mutual TLS with I(tls_ca),
        I(tls_cert) and I(tls_key)).
      - Default (also from the environment variable C(PROVISIONER_TARGET)) the daemon at
        C(unix:///run/provisioner/provisioner.sock) if it answers within 2 seconds, else
        the target machine directly.
    type: str
  state_dir:
    description:
      - State directory when acting on the machine directly (env C(PROVISIONER_STATE_DIR)).
        A value other than the default means this machine with that state, so the
        default daemon is then not used. Ignored with a daemon.
    type: path
    default: /var/lib/provisioner
  cgroup_root:
    description:
      - Cgroup subtree of the cells when acting on the machine directly (env
        C(PROVISIONER_CGROUP_ROOT)); like I(state_dir), a non-default value means this
        machine directly. Ignored with a daemon.
    type: str
    default: provisioner
  tls_ca:
    description: CA certificate that signed the daemon's (C(host:port) targets).
    type: path
  tls_cert:
    description: This client's certificate for mutual TLS; goes with I(tls_key).
    type: path
  tls_key:
    description: This client's private key for mutual TLS; goes with I(tls_cert).
    type: path
  lock_timeout:
    description:
      - Seconds to wait for another apply on this machine to finish before failing with
        who holds the lock. A daemon runs one apply at a time by itself.
    type: float
    default: 10.0
notes:
  - Supports check mode and diff mode.
  - C(changed) is true exactly when the plan had steps and at least one of them succeeded.
  - Removing a cell that a resource of another manifest set runs in is refused; remove
    that resource first.
seealso:
  - module: provisioner_manifest
"""

EXAMPLES = r"""
- name: A cell
  provisioner_resource:
    kind: Cell
    name: web
    spec: {cpu: {weight: 200, max: 500000}}

- name: An executable in it
  provisioner_resource:
    kind: Executable
    name: api
    spec: {cell: web, command: "python3 -m http.server 8080", restartPolicy: on-failure}
    labels: {team: shop}

- name: Through a remote daemon with mutual TLS
  provisioner_resource:
    kind: Cell
    name: web/cache
    spec: {cpu: {weight: 100}}
    target: node1.lab:7443
    tls_ca: /etc/provisioner/pki/ca.pem
    tls_cert: /etc/provisioner/pki/ci-bot.pem
    tls_key: /etc/provisioner/pki/ci-bot.key

- name: Remove the executable (then the cell, in a later task)
  provisioner_resource:
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
  description: The plan as C(provisioner plan) prints it, one line per item.
  returned: success or a failed apply
  type: list
  elements: str
  sample:
    - "Plan: 1 to update, 0 unchanged (node generation 10, manifest set 'cell.web')."
    - "  #0      ~ update   Cell/web: spec changed: cpu.weight 200 -> 300 (in place)"
actions:
  description:
    - One line per step performed (in check mode, per step that would be performed).
    - A failed or skipped step ends with C(-- FAILED:) or C(-- skipped:) and the reason.
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

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    from provisioner.ansible_resource import ResourceManager, ResourceOptions
    from provisioner.ansible_support import ModuleFailure
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
else:
    IMPORT_ERROR = ""

ARGUMENT_SPEC = dict(
    kind=dict(type="str", required=True,
              choices=["Cell", "Executable", "Pod", "Driver", "PersistentExecutable"]),
    name=dict(type="str", required=True),
    spec=dict(type="dict", default={}),
    labels=dict(type="dict"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    target=dict(type="str", fallback=(env_fallback, ["PROVISIONER_TARGET"])),
    state_dir=dict(type="path", default="/var/lib/provisioner",
                   fallback=(env_fallback, ["PROVISIONER_STATE_DIR"])),
    cgroup_root=dict(type="str", default="provisioner",
                     fallback=(env_fallback, ["PROVISIONER_CGROUP_ROOT"])),
    tls_ca=dict(type="path"),
    tls_cert=dict(type="path"),
    tls_key=dict(type="path"),
    lock_timeout=dict(type="float", default=10.0),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_together=[("tls_cert", "tls_key")],
    )
    if IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib(
                "provisioner",
                reason="to validate, plan and apply resources; point "
                "ansible_python_interpreter at the virtualenv it is installed in"),
            exception=IMPORT_ERROR)
    manager = ResourceManager(ResourceOptions.from_params(module.params),
                              check_mode=module.check_mode, want_diff=module._diff)
    try:
        result = manager.run()
    except ModuleFailure as failure:
        module.fail_json(msg=failure.msg, **failure.fields)
    for warning in result.pop("warnings", ()):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
