#!/usr/bin/python
# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""provisioner.node.manifest: make a node match provisioner manifests in one task.

Thin on purpose: options, documentation, the mapping to exit_json / fail_json. The
validating, planning and applying live in ``provisioner.ansible_support`` (the library,
on the managed node); ``src`` is read and rendered on the controller by the action
plugin of the same name."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: manifest
short_description: Make a node match provisioner manifests (validate, plan, apply)
description:
  - Validates manifests (cells, executables, pods, drivers, persistent executables),
    compares them with what the node runs, compiles an ordered plan and applies it, all
    in one task. This is the fast path for converging a node.
  - Manifests come from the controller (O(src), rendered there with the play's
    variables), inline (O(definition)) or from files already on the managed node
    (O(path)).
  - Check mode compiles the plan and reports what would change; it takes no lock and
    changes nothing. With C(--diff), the changed resources are returned as they are on
    the node (before) and as declared (after).
  - Running the same task twice reports C(changed) the first time and C(ok) the second.
version_added: "0.1.0"
author:
  - Provisioner maintainers (@provisioner)
options:
  src:
    description:
      - A manifest file or a directory of them (every C(*.yaml) / C(*.yml) below it,
        hidden ones skipped) on the B(controller).
      - A relative path is looked up like the M(ansible.builtin.template) module's
        C(src) is, in the role's or playbook's C(templates/) then C(files/) folders, then
        next to the playbook.
      - Rendered on the controller by the provisioner's sandboxed Jinja2 templating with
        the play's variables (and O(vars), which win), then sent to the node; errors name
        the controller file and its line.
      - The manifest set defaults to the file's stem or the folder's name.
    type: path
  definition:
    description:
      - The manifests inline, a YAML string (several documents separated by C(---)) or a
        list of documents (mappings). Requires O(manifest_set).
    type: raw
  path:
    description:
      - Manifest files or directories on the B(managed node) (every C(*.yaml) / C(*.yml)
        below them, hidden ones skipped), rendered there with O(vars).
      - The manifest set defaults to the file's stem or the folder's name, like the CLI.
    type: list
    elements: path
  manifest_set:
    description:
      - The inventory these manifests form; resources of other sets are never touched.
      - Required with O(definition), and with O(state=absent) when no manifests are
        given.
    type: str
  state:
    description:
      - V(present) makes the node match the manifests.
      - V(absent) removes every resource of the manifest set, in reverse dependency order.
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Also remove resources of the set that are no longer declared. Without it they are
        listed in RV(would_prune) and a warning names them.
    type: bool
    default: false
  vars:
    description:
      - Variables for the Jinja2 templating of the manifests (O(src) and O(path)); with
        O(src) they add to, and win over, the play's variables.
    type: dict
  parallelism:
    description: How many steps run at once at most; V(0) means the default (8).
    type: int
    default: 0
  _rendered_files:
    description:
      - Internal, set by the action plugin from O(src); do not set it yourself.
      - The controller's file names of O(_rendered_texts), which errors name.
    type: list
    elements: str
  _rendered_texts:
    description:
      - Internal, set by the action plugin from O(src); do not set it yourself.
      - The manifests as rendered on the controller (not logged).
    type: list
    elements: str
extends_documentation_fragment:
  - provisioner.node.node
  - provisioner.node.node.action_group
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: The action plugin reads and renders O(src) on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - C(changed) is true exactly when the plan had steps and at least one of them succeeded.
  - A failing step fails the task, naming the step and its error; independent steps still
    run and everything done is recorded, so running the task again converges.
  - Exactly one of O(src), O(definition) and O(path) is needed with O(state=present).
seealso:
  - module: provisioner.node.resource
  - module: provisioner.node.info
"""

EXAMPLES = r"""
- name: Converge the node with the manifests of the role's templates/node folder
  provisioner.node.manifest:
    src: node/
  register: converged

- name: Show what would change, without changing anything
  provisioner.node.manifest:
    src: manifests/web.yaml
    vars: {workers: 3}
  check_mode: true
  diff: true

- name: Inline, through a remote daemon over mutual TLS, removing what is no longer declared
  provisioner.node.manifest:
    manifest_set: web
    prune: true
    definition:
      - apiVersion: provisioner/v1
        kind: Cell
        metadata: {name: web}
        spec: {cpu: {weight: 200}}
    target: node1.lab:7443
    tls_ca: /etc/provisioner/pki/ca.pem
    tls_cert: /etc/provisioner/pki/ci-bot.pem
    tls_key: /etc/provisioner/pki/ci-bot.key
  delegate_to: localhost

- name: Manifests already on the managed node
  provisioner.node.manifest:
    path: /srv/manifests

- name: Remove everything the manifest set created
  provisioner.node.manifest:
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
  description: The plan's steps, in order (empty when nothing is to be done).
  returned: success or a failed apply
  type: list
  elements: dict
  contains:
    step:
      description: The step's number in the plan (C(#3) in RV(plan_text)).
      type: int
    kind:
      description: The resource's kind.
      type: str
    name:
      description: The resource's name.
      type: str
    action:
      description: allocate, start, stop, free, update, push, enable, disable or delete.
      type: str
    change:
      description: What the step means for the resource, create, update, replace or delete.
      type: str
    reason:
      description: Why the step is needed.
      type: str
    requires:
      description: The numbers of the steps that must finish first.
      type: list
      elements: int
  sample:
    - {step: 0, kind: Cell, name: web, action: update, change: update,
       reason: "spec changed: cpu.weight 200 -> 300 (in place)", requires: []}
plan_text:
  description: The plan as C(provisioner plan) prints it, one line per item.
  returned: success or a failed apply
  type: list
  elements: str
  sample:
    - "Plan: 1 to update, 5 unchanged (node generation 10, manifest set 'node')."
    - "  #0      ~ update   Cell/web: spec changed: cpu.weight 200 -> 300 (in place)"
actions:
  description:
    - One object per step performed (in check mode, per step that would be performed),
      as in RV(plan), with its C(result) and, when it failed or was skipped, C(message).
  returned: success or a failed apply
  type: list
  elements: dict
  sample:
    - {step: 3, kind: Executable, name: api, action: start, change: create,
       reason: created, requires: [0], result: succeeded}
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
  sample: {created: 0, updated: 1, replaced: 0, deleted: 0, unchanged: 5, failed: 0,
           skipped: 0, generation: 11}
would_prune:
  description: Resources of the set that are no longer declared (removed only with
    O(prune)).
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
    message (with O(src), the file is the controller's).
  returned: when the manifests are invalid
  type: list
  elements: str
  sample:
    - "/srv/site/templates/node/cells.yaml:7:13: spec.cpu.weight: 0 is less than the
      minimum of 1"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.provisioner.node.plugins.module_utils.node import (
    NODE_REQUIRED_TOGETHER,
    node_argument_spec,
    require_provisioner,
    run_manager,
)

ARGUMENT_SPEC = node_argument_spec(
    src=dict(type="path"),
    definition=dict(type="raw"),
    path=dict(type="list", elements="path"),
    manifest_set=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    prune=dict(type="bool", default=False),
    vars=dict(type="dict"),
    parallelism=dict(type="int", default=0),
    # Sent by the action plugin in place of src: the controller files' names and their
    # rendered texts (no_log: they may hold the play's secrets).
    _rendered_files=dict(type="list", elements="str"),
    _rendered_texts=dict(type="list", elements="str", no_log=True),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("src", "definition", "path", "_rendered_texts")],
        required_together=NODE_REQUIRED_TOGETHER,
        required_by={"definition": "manifest_set"},
    )
    if module.params["src"] is not None:
        module.fail_json(msg="src names a file on the controller: run this module through "
                         "its action plugin (as provisioner.node.manifest), or use path for "
                         "files on the managed node")
    if module.params["parallelism"] < 0:
        module.fail_json(msg="parallelism must be 0 (the default) or more")
    params = module.params
    if params["state"] == "present" and not (params["path"] or params["_rendered_texts"]
                                             or params["definition"] is not None):
        module.fail_json(msg="state=present needs one of src (on the controller), path (on "
                         "the managed node) or definition")
    require_provisioner(module, "to validate, plan and apply manifests")

    from provisioner.ansible_support import ManifestManager, ManifestOptions

    run_manager(module, lambda: ManifestManager(
        ManifestOptions.from_params(params), check_mode=module.check_mode,
        want_diff=module._diff))


if __name__ == "__main__":
    main()
