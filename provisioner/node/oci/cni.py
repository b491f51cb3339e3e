"""The CNI plugins, called as the CNI specification says (version 1.0.0).

A plugin is a program: the operation and the container are in environment variables
(``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_PATH``), the
network configuration is JSON on stdin, the result (ADD) or an error object is JSON on
stdout. A chain (here ``bridge`` with ``host-local`` IPAM, then ``portmap`` when the pod
publishes ports) is ADDed in order, each plugin given the previous one's result as
``prevResult``, and DELeted in reverse order with the ADD's result. DEL is idempotent:
it succeeds for a container it never saw, or whose namespace is gone.

The plugins are Debian's ``containernetworking-plugins`` (``/usr/lib/cni``); no Python
package is needed. This module knows nothing of pods: :mod:`cni_pods` records what it
ADDs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping

from provisioner.errors import InvalidArgument, NodeError, Unavailable
from provisioner.lazyre import lazy_pattern

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

CNI_VERSION = "1.0.0"
#: Where plugins are looked for, in order (Debian's package, then the upstream default).
PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
#: The plugins a pod bridge needs.
PLUGINS = ("bridge", "host-local", "portmap", "loopback")
_TIMEOUT_S = 60.0
#: CNI_CONTAINERID: "alphanumeric, plus underscore, period and hyphen" (the spec).
_CONTAINER_ID = lazy_pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def plugin_dir() -> str:
    """The first directory of ``$PROVISIONER_CNI_PATH`` (when set) and
    :data:`PLUGIN_DIRS` that holds every plugin of :data:`PLUGINS`; Unavailable naming
    the Debian package otherwise."""
    override = os.environ.get("PROVISIONER_CNI_PATH", "")
    for directory in (*([override] if override else []), *PLUGIN_DIRS):
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in PLUGINS):
            return directory
    raise Unavailable("the CNI plugins are not installed (apt-get install "
                      "containernetworking-plugins): bridge pods need bridge, host-local "
                      f"and portmap in {' or '.join(PLUGIN_DIRS)}")


def invoke(command: str, config: Mapping[str, Any], *, container_id: str, netns: str,
           ifname: str = "eth0") -> dict[str, Any]:
    """Run the plugin ``config["type"]`` for ``command`` (ADD, DEL, CHECK); its result
    (an empty dict for DEL and CHECK). NodeError with the plugin's own message
    (``msg``, ``details``, ``code``) when it fails."""
    if command not in ("ADD", "DEL", "CHECK"):
        raise InvalidArgument(f"CNI command {command!r} is not ADD, DEL or CHECK")
    if not _CONTAINER_ID.match(container_id):
        raise InvalidArgument(f"CNI container id {container_id!r} is not alphanumeric "
                              "with '_', '.' and '-'")
    kind = str(config.get("type", ""))
    if kind not in PLUGINS:
        raise InvalidArgument(f"CNI plugin {kind!r} is not one of {', '.join(PLUGINS)}")
    directory = plugin_dir()
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": directory,
           # the plugins run iptables and ip from PATH
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    what = f"CNI {command} of {kind} for {container_id}"
    import subprocess  # (a loopback pod runs no plugin: ~1.5 ms with selectors)

    try:
        done = subprocess.run([os.path.join(directory, kind)], input=json.dumps(config),
                              capture_output=True, text=True, errors="replace", env=env,
                              timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"{what}: no answer within {_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise NodeError(f"{what}: cannot run the plugin: {exc.strerror}") from exc
    if done.returncode != 0:
        raise NodeError(f"{what} failed: {_error_text(done.stdout, done.stderr)}")
    if command != "ADD":
        return {}
    try:
        result = json.loads(done.stdout)
    except ValueError as exc:
        raise NodeError(f"{what}: the plugin printed no JSON result ({exc})") from None
    if not isinstance(result, dict):
        raise NodeError(f"{what}: the plugin's result is not a JSON object")
    return result


def _error_text(stdout: str, stderr: str) -> str:
    """A plugin's error object as one line (``msg: details (code N)``)."""
    try:
        error = json.loads(stdout)
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("msg"):
        details = f": {error['details']}" if error.get("details") else ""
        return f"{error['msg']}{details} (code {error.get('code', '?')})"
    return (stderr.strip() or stdout.strip() or "no message")[:2000]


def add_chain(plugins: list[dict[str, Any]], *, container_id: str, netns: str,
              ifname: str = "eth0") -> dict[str, Any]:
    """ADD every plugin of a chain in order; the last result. A failure DELetes what
    was added (best effort, then the error is raised)."""
    result: dict[str, Any] | None = None
    done: list[dict[str, Any]] = []
    try:
        for plugin in plugins:
            config = dict(plugin) if result is None else {**plugin, "prevResult": result}
            done.append(plugin)
            result = invoke("ADD", config, container_id=container_id, netns=netns,
                            ifname=ifname)
    except NodeError:
        # On a failed undo the caller's record still names the chain: the next DEL
        # retries it.
        with contextlib.suppress(NodeError):
            del_chain(done, result, container_id=container_id, netns=netns, ifname=ifname)
        raise
    return result or {}


def del_chain(plugins: list[dict[str, Any]], result: dict[str, Any] | None, *,
              container_id: str, netns: str, ifname: str = "eth0") -> None:
    """DEL every plugin of a chain in reverse order (``result``: the ADD's, when known).
    Every plugin is tried; the first failure is raised after the others ran."""
    failure: NodeError | None = None
    path = netns if netns and os.path.exists(netns) else ""
    for plugin in reversed(plugins):
        config = dict(plugin) if result is None else {**plugin, "prevResult": result}
        try:
            invoke("DEL", config, container_id=container_id, netns=path, ifname=ifname)
        except NodeError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def result_ipv4(result: Mapping[str, Any]) -> tuple[str, str]:
    """The first IPv4 address of an ADD result, with its prefix (``10.89.0.2/24``), and
    its gateway ("" when none); NodeError when the result has none."""
    for entry in result.get("ips") or ():
        address = str(entry.get("address", "")) if isinstance(entry, dict) else ""
        if "." in address:
            return address, str(entry.get("gateway", ""))
    raise NodeError("the CNI result holds no IPv4 address")
