# Copyright: the provisioner authors
# Apache License 2.0 (see the collection's galaxy.yml)
"""The controller side of provisioner.node.manifest: ``src`` read and rendered here.

``src`` (a file or a directory on the controller) is looked up like the template
module's (the role's or playbook's ``templates/`` then ``files/``, then next to the
playbook), read, and rendered with the provisioner's own sandboxed templating
(``provisioner.manifest.template.render``, through ``provisioner.ansible_content``) with
the play's variables that the manifests use, plus the task's ``vars``. The rendered
texts travel to the node as module arguments (``_rendered_files`` and the no_log
``_rendered_texts``): one payload, no temporary files to clean up, nothing logged. The
module validates, plans and applies there; errors keep the controller file's
``file:line:col``. ``definition`` and ``path`` pass through untouched.
"""

from __future__ import annotations

from ansible.errors import AnsibleError, AnsibleFileNotFound
from ansible.plugins.action import ActionBase

MODULE = "provisioner.node.manifest"


def plain(value):
    """A variable's value as plain data (Ansible's lazy, tagged or vaulted values are
    made ordinary dicts, lists and strings) for the provisioner's templating."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    return str(value)


class ActionModule(ActionBase):
    """Renders ``src`` on the controller, then runs the module on the node."""

    TRANSFERS_FILES = False  # the rendered texts are module arguments

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp  # unused: nothing is transferred
        args = dict(self._task.args)
        if args.get("src") is not None:
            try:
                args = self._rendered_args(args, task_vars)
            except _SourceError as failure:
                result.update(failed=True, changed=False, msg=failure.msg, **failure.fields)
                return result
        result.update(self._execute_module(module_name=MODULE, module_args=args,
                                           task_vars=task_vars))
        return result

    def _rendered_args(self, args, task_vars):
        """``args`` with ``src`` replaced by its rendered texts."""
        for other in ("definition", "path"):
            if args.get(other) is not None:
                raise _SourceError(f"src and {other} are mutually exclusive: give one source "
                                   "of manifests")
        try:
            from provisioner.ansible_content import (
                read_sources,
                render_sources,
                template_names,
            )
            from provisioner.manifest.set_name import default_set_name
        except ImportError as exc:
            raise _SourceError(
                "src is read and rendered on the controller, which needs the provisioner "
                f"Python package in Ansible's own Python (import failed: {exc}); install it "
                "there, or use path (files on the managed node) or definition") from None
        source = self._find_source(str(args.pop("src")))
        if not args.get("manifest_set"):
            args["manifest_set"] = default_set_name([source])
        if args.get("state") == "absent":  # only the set's name is needed
            args.pop("vars", None)
            return args
        texts, issues = read_sources([source])
        variables = self._variables(template_names(texts), task_vars)
        variables.update(plain(args.pop("vars", None) or {}))
        rendered, more = render_sources(texts, variables)
        issues = sorted(set(issues + more))
        if issues:
            errors = [issue.render() for issue in issues]
            raise _SourceError(f"invalid manifests ({len(errors)} error(s)) in src "
                               f"{source} on the controller, nothing was changed:\n"
                               + "\n".join(errors), errors=errors)
        args["_rendered_files"] = [pair[0] for pair in rendered]
        args["_rendered_texts"] = [pair[1] for pair in rendered]
        return args

    def _find_source(self, src):
        """``src`` looked up like the template module's, templates/ then files/."""
        for folder in ("templates", "files"):
            try:
                return self._find_needle(folder, src)
            except AnsibleFileNotFound:
                continue
        raise _SourceError(f"src {src!r}: no such file or directory on the controller "
                           "(looked in the role's or playbook's templates/ and files/ "
                           "folders and next to the playbook)")

    def _variables(self, names, task_vars):
        """The play's variables among ``names``, resolved (templated) and made plain."""
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        variables = {}
        for name in sorted(names):
            if name not in task_vars:
                continue  # the renderer reports it as undefined, with its line
            try:
                if hasattr(templar, "resolve_variable_expression"):  # ansible-core 2.19+
                    value = templar.resolve_variable_expression(name)
                else:
                    value = templar.template(task_vars[name])
            except AnsibleError as exc:
                raise _SourceError(f"variable {name!r}, used by the manifests in src, "
                                   f"cannot be resolved: {exc}") from None
            variables[name] = plain(value)
        return variables


class _SourceError(Exception):
    """A failure of reading or rendering ``src``: the task fails with it."""

    def __init__(self, msg, **fields):
        super().__init__(msg)
        self.msg = msg
        self.fields = fields
