"""The one error hierarchy of the provisioner.

Every error a user can see derives from :class:`ProvisionerError`. Each boundary
translates it exactly once: the CLI into an exit code and one message, the daemon
into a gRPC status code, an Ansible module into ``fail_json``.

::

    ProvisionerError
    ├── UsageError                  bad CLI arguments                (CLI exit 64)
    ├── ManifestError               manifests that cannot be used    (CLI exit 2)
    │   ├── LoadError               unreadable / unsafe / not YAML
    │   └── ValidationFailed        schema and cross-document errors (carries them all)
    ├── InvalidArgument             a bad name, value or request     (INVALID_ARGUMENT)
    │   └── UnsafeName              a name that could escape its root
    ├── NotFound                    no such cell / executable / ...  (NOT_FOUND)
    ├── AlreadyExists               conflicting create               (ALREADY_EXISTS)
    ├── FailedPrecondition          state forbids it (not owned, stale plan, busy)
    │   ├── StalePlan               plan made against an older generation
    │   ├── LockBusy                another writer holds the state lock
    │   └── NotOwned                a cgroup/object the provisioner did not create
    ├── PermissionDenied            not root / not allowed           (PERMISSION_DENIED)
    ├── Unavailable                 daemon unreachable, cgroups unusable (UNAVAILABLE)
    ├── DataLoss                    truncated or corrupt upload      (DATA_LOSS)
    └── NodeError                   an operating-system fault        (INTERNAL)
"""

from __future__ import annotations


class ProvisionerError(Exception):
    """Base of every error the provisioner raises on purpose."""


class UsageError(ProvisionerError):
    """The command line was wrong."""


class ManifestError(ProvisionerError):
    """Manifests could not be turned into a model."""


class LoadError(ManifestError):
    """A manifest file could not be read or parsed safely.

    ``file``, ``line`` and ``column`` (1-based) locate the problem when known.
    """

    def __init__(
        self, file: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        """``file:line:column: message``, with the parts that are known."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ValidationFailed(ManifestError):
    """One or more validation errors; ``errors`` holds every one of them."""

    def __init__(self, errors: list[object]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} validation error(s)")


class InvalidArgument(ProvisionerError):
    """A request or value is malformed."""


class UnsafeName(InvalidArgument):
    """A name that would not stay inside its root if used as a path."""


class NotFound(ProvisionerError):
    """The named object does not exist."""


class AlreadyExists(ProvisionerError):
    """An object of that name exists with a different definition."""


class FailedPrecondition(ProvisionerError):
    """The current state does not allow the operation."""


class StalePlan(FailedPrecondition):
    """A saved plan was made against an older node generation."""


class LockBusy(FailedPrecondition):
    """Another process holds the state lock."""


class NotOwned(FailedPrecondition):
    """The object exists but the provisioner did not create it."""


class PermissionDenied(ProvisionerError):
    """The caller may not do this (not root, or denied by policy)."""


class Unavailable(ProvisionerError):
    """A service or kernel facility needed is not reachable or usable."""


class DataLoss(ProvisionerError):
    """Data arrived truncated or corrupt; nothing was stored."""


class NodeError(ProvisionerError):
    """The operating system refused an operation for a reason we did not expect."""
