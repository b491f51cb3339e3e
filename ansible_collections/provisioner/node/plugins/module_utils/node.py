# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""What every module of provisioner.node shares: the node options' argument spec, the
check that the provisioner library is importable on the managed node, and running a
manager of that library into exit_json / fail_json."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import provisioner  # noqa: F401  # pylint: disable=unused-import
except ImportError:
    PROVISIONER_IMPORT_ERROR = traceback.format_exc()
else:
    PROVISIONER_IMPORT_ERROR = None

#: The options documented by the ``provisioner.node.node`` doc fragment.
NODE_ARGUMENT_SPEC = dict(
    target=dict(type="str", fallback=(env_fallback, ["PROVISIONER_TARGET"])),
    tls_ca=dict(type="path"),
    tls_cert=dict(type="path"),
    tls_key=dict(type="path", no_log=False),  # a file name, not the key
    state_dir=dict(type="path", default="/var/lib/provisioner",
                   fallback=(env_fallback, ["PROVISIONER_STATE_DIR"])),
    cgroup_root=dict(type="str", default="provisioner",
                     fallback=(env_fallback, ["PROVISIONER_CGROUP_ROOT"])),
    lock_timeout=dict(type="float", default=10.0),
)

NODE_REQUIRED_TOGETHER = [("tls_cert", "tls_key")]


def node_argument_spec(**options):
    """The module's own options plus the node options."""
    spec = dict(NODE_ARGUMENT_SPEC)
    spec.update(options)
    return spec


def require_provisioner(module, purpose):
    """fail_json with Ansible's usual message when the library is missing."""
    if PROVISIONER_IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib(
                "provisioner",
                reason=purpose + "; point ansible_python_interpreter at the virtualenv it "
                "is installed in (/opt/provisioner/bin/python after the "
                "provisioner.node.daemon role)"),
            exception=PROVISIONER_IMPORT_ERROR)


def run_manager(module, make_manager):
    """Make a manager of provisioner.ansible_* (``make_manager()``), run it and report
    its outcome, exactly once."""
    from provisioner.ansible_support import ModuleFailure

    try:
        result = make_manager().run()
    except ModuleFailure as failure:
        fields = dict(failure.fields)
        for warning in fields.pop("warnings", ()):
            module.warn(warning)
        module.fail_json(msg=failure.msg, **fields)
    for warning in result.pop("warnings", ()):
        module.warn(warning)
    module.exit_json(**result)
