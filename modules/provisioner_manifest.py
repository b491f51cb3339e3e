#!/usr/bin/python
# Copyright: the provisioner authors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: make a node match provisioner manifests in one task.

Thin on purpose: the options, their documentation and the mapping to exit_json /
fail_json live here; validating, planning, applying and shaping the results live in
``provisioner.ansible_support`` (installed on the target with the provisioner).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: provisioner_manifest
short_description: Make a node match provisioner manifests (validate, plan, apply)
description:
  - Validates YAML manifests (cells, executables, drivers, persistent executables),
    compares them with what the node runs, compiles an ordered plan and applies it,
    all in one task. This is the fast path for converging a node.
  - Acts through the node daemon named by I(target); without it, through the daemon on
    the default unix socket when it answers, otherwise directly on the target machine
    (which needs root).
  - Check mode compiles the plan and reports what would change; it takes no lock and
    changes nothing. With C(--diff), the changed resources are returned as they are on
    the node (before) and as declared (after).
  - Running the same task twice reports C(changed) the first time and C(ok) the second.
version_added: "0.1.0"
author:
  - Provisioner maintainers (@provisioner)
requirements:
  - The C(provisioner) Python package on the target (point C(ansible_python_interpreter)
    at the virtualenv it is installed in).
options:
  path:
    description:
      - Manifest files or directories (every C(*.yaml) / C(*.yml) below them, hidden
        ones skipped).
      - Required unless I(state=absent) with I(manifest_set).
    type: list
    elements: path
  manifest_set:
    description:
      - The inventory these manifests form; resources of other sets are never touched.
      - Default derived from I(path) like the CLI does, the file's stem or the folder's
        name (C(examples/node) gives C(node)).
    type: str
  state:
    description:
      - C(present) makes the node match the manifests.
      - C(absent) removes every resource of the manifest set, in reverse dependency order.
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Also remove resources of the set that are no longer declared. Without it they are
        only listed in RV(would_prune).
    type: bool
    default: false
  vars:
    description:
      - Variables for the Jinja2 templating of the manifest files.
    type: dict
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
  parallelism:
    description: How many steps run at once at most; C(0) means the default (8).
    type: int
    default: 0
  lock_timeout:
    description:
      - Seconds to wait for another apply on this machine to finish before failing with
        who holds the lock. A daemon runs one apply at a time by itself.
    type: float
    default: 10.0
notes:
  - Supports check mode and diff mode.
  - C(changed) is true exactly when the plan had steps and at least one of them succeeded.
  - A failing step fails the task, naming the step and its error; independent steps still
    run and everything done is recorded, so running the task again converges.
"""

EXAMPLES = r"""
- name: Converge this node with the manifests next to the playbook
  provisioner_manifest:
    path: "{{ playbook_dir }}/manifests"
  register: converged

- name: Show what would change, without changing anything
  provisioner_manifest:
    path: [manifests/cells.yaml, manifests/apps.yaml]
    manifest_set: web
    vars: {workers: 3}
  check_mode: true
  diff: true

- name: Apply through a remote daemon with mutual TLS, removing what is no longer declared
  provisioner_manifest:
    path: manifests/
    prune: true
    target: node1.lab:7443
    tls_ca: /etc/provisioner/pki/ca.pem
    tls_cert: /etc/provisioner/pki/ci-bot.pem
    tls_key: /etc/provisioner/pki/ci-bot.key

- name: Remove everything the manifest set created
  provisioner_manifest:
    manifest_set: web
    state: absent
"""

RETURN = r"""
manifest_set:
  description: The manifest set acted on.
  returned: success or a failed apply
  type: str
  sample: node
plan:
  description: The plan as C(provisioner plan) prints it, one line per item.
  returned: success or a failed apply
  type: list
  elements: str
  sample:
    - "Plan: 1 to update, 5 unchanged (node generation 10, manifest set 'node')."
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
  sample: {created: 0, updated: 1, replaced: 0, deleted: 0, unchanged: 5, failed: 0,
           skipped: 0, generation: 11}
would_prune:
  description: Resources of the set that are no longer declared (removed only with I(prune)).
  returned: success or a failed apply
  type: list
  elements: str
  sample: ["Executable/old-worker"]
diff:
  description: The changed resources as the node has them and as declared (environment
    values are never shown).
  returned: with C(--diff)
  type: dict
  sample: {before: "Cell/web:\n  cpu.weight: 200\n", after: "Cell/web:\n  cpu.weight: 300\n"}
errors:
  description: Every validation error, as C(file:line:col) then the JSON path and the
    message.
  returned: when the manifests are invalid
  type: list
  elements: str
  sample: ["cells.yaml:7:13: spec.cpu.weight: 0 is less than the minimum of 1"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    from provisioner.ansible_support import ManifestManager, ManifestOptions, ModuleFailure
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
else:
    IMPORT_ERROR = ""

ARGUMENT_SPEC = dict(
    path=dict(type="list", elements="path"),
    manifest_set=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    prune=dict(type="bool", default=False),
    vars=dict(type="dict"),
    target=dict(type="str", fallback=(env_fallback, ["PROVISIONER_TARGET"])),
    state_dir=dict(type="path", default="/var/lib/provisioner",
                   fallback=(env_fallback, ["PROVISIONER_STATE_DIR"])),
    cgroup_root=dict(type="str", default="provisioner",
                     fallback=(env_fallback, ["PROVISIONER_CGROUP_ROOT"])),
    tls_ca=dict(type="path"),
    tls_cert=dict(type="path"),
    tls_key=dict(type="path"),
    parallelism=dict(type="int", default=0),
    lock_timeout=dict(type="float", default=10.0),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("state", "present", ["path"]),
                     ("state", "absent", ["path", "manifest_set"], True)],
        required_together=[("tls_cert", "tls_key")],
    )
    if IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib(
                "provisioner",
                reason="to validate, plan and apply manifests; point "
                "ansible_python_interpreter at the virtualenv it is installed in"),
            exception=IMPORT_ERROR)
    if module.params["parallelism"] < 0:
        module.fail_json(msg="parallelism must be 0 (the default) or more")
    manager = ManifestManager(ManifestOptions.from_params(module.params),
                              check_mode=module.check_mode, want_diff=module._diff)
    try:
        result = manager.run()
    except ModuleFailure as failure:
        module.fail_json(msg=failure.msg, **failure.fields)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
