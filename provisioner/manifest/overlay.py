"""What the protos cannot say: ranges, patterns, required fields, defaults.

The schema generator (``schema_gen.py``) merges this overlay into the JSON Schemas it
derives from the proto descriptors. It is the only hand-written part of the schemas;
``provisioner/schemas/*.json`` themselves are generated and never edited.

Keys are proto message full names, then field names in snake_case. A field entry is
merged into the field's generated schema (for repeated fields, put item rules under
``items``; for maps, key rules under ``propertyNames``). ``DESCRIPTIONS`` replaces the
proto comment of a field where it is not true here.
"""

from __future__ import annotations

from provisioner import limits as lim
from provisioner.names import ARTIFACT_NAME, CELL_PATH, DNS_LABEL

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

#: Kernel list syntax for cpuset.cpus / cpuset.mems: "0-3,8". Descending ranges such
#: as "5-1" match the pattern but are refused by the "cpu-list" format check.
CPU_LIST = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"
#: Durations such as 10s, 500ms, 1m30s, 2h.
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
KIND_NAMES = ("Cell", "Executable", "Pod", "Driver", "PersistentExecutable")
#: A reference to another resource: Kind/name.
REF = rf"^({'|'.join(KIND_NAMES)})/[^\s]+$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
MAX_ID = 4294967294  # (uid_t)-1 is "no change" for setuid; refuse it

#: How to say what a pattern wants, for error messages.
PATTERN_HELP: dict[str, str] = {
    CPU_LIST: "a CPU list such as 0-3,8",
    DURATION: "a duration such as 10s, 500ms or 1m30s",
    REF: "a reference Kind/name such as Executable/db",
    ENV_NAME: "an environment variable name (letters, digits and _, not starting with a digit)",
    "^/": "an absolute path",
    "^[0-9a-f]{64}$": "a lowercase hex SHA-256 (64 characters)",
    f"^{DNS_LABEL}$": "a DNS label (1-63 of a-z, A-Z, 0-9 and '-', not starting or ending "
    "with '-')",
    rf"^({CELL_PATH})?$": "a cell path (DNS labels joined by '/')",
    f"^{ARTIFACT_NAME}$": "a file-safe name (1-128 of A-Z a-z 0-9 . _ + -, starting and ending "
    "with a letter or digit)",
    LABEL_KEY: "a label key ([prefix/]name, name of 1-63 of A-Z a-z 0-9 - _ .)",
    LABEL_VALUE: "a label value (at most 63 of A-Z a-z 0-9 - _ ., starting and ending with a "
    "letter or digit)",
}

_DEPENDS_ON = {"items": {"type": "string", "pattern": REF}, "uniqueItems": True,
               "maxItems": lim.MAX_DEPENDS_ON}
#: A duration: the syntax (pattern) and, through the "duration" format (checked in
#: schema_check), at most MAX_STOP_GRACE_S.
_GRACE = {"pattern": DURATION, "format": "duration", "maxLength": lim.MAX_DURATION_CHARS,
          "description": f"At most {lim.format_seconds(lim.MAX_STOP_GRACE_S)}."}
_ENV = {"propertyNames": {"pattern": ENV_NAME}, "maxProperties": lim.MAX_ENV_ENTRIES,
        "additionalProperties": {"maxLength": lim.MAX_ENV_VALUE_CHARS}}
_COMMAND = {"minLength": 1, "maxLength": lim.MAX_COMMAND_CHARS}

FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "aurae.runtime.v0.CpuController": {
        "weight": {"minimum": lim.MIN_CPU_WEIGHT, "maximum": lim.MAX_CPU_WEIGHT},
        # The seed says >= 0, but the kernel refuses a quota below 1 ms per period (v1
        # cfs_quota_us and v2 cpu.max alike), so 0..999 could never be applied.
        "max": {"minimum": lim.MIN_CPU_MAX_US, "maximum": lim.MAX_CPU_MAX_US},
    },
    "aurae.runtime.v0.CpusetController": {
        "cpus": {"pattern": CPU_LIST, "format": "cpu-list"},
        "mems": {"pattern": CPU_LIST, "format": "cpu-list"},
    },
    "provisioner.v1.ObjectMeta": {
        "labels": {
            "propertyNames": {"pattern": LABEL_KEY},
            "additionalProperties": {"pattern": LABEL_VALUE},
            "maxProperties": lim.MAX_LABELS,
        },
        "annotations": {"maxProperties": lim.MAX_LABELS},
    },
    "provisioner.v1.CellSpec": {"depends_on": _DEPENDS_ON},
    "provisioner.v1.ExecutableSpec": {
        "command": _COMMAND,
        "cell": {"pattern": rf"^({CELL_PATH})?$"},
        "env": _ENV,
        "working_dir": {"pattern": "^/"},
        "uid": {"maximum": MAX_ID},
        "gid": {"maximum": MAX_ID},
        "stop_grace_period": _GRACE,
        "depends_on": _DEPENDS_ON,
    },
    "provisioner.v1.ContainerSpec": {
        "name": {"pattern": f"^{DNS_LABEL}$"},
        "image": {"minLength": 1, "maxLength": lim.MAX_IMAGE_CHARS,
                  "format": "image-reference"},
        "command": {"maxItems": lim.MAX_ARGV_ITEMS,
                    "items": {"maxLength": lim.MAX_COMMAND_CHARS}},
        "env": _ENV,
        "ports": {"maxItems": lim.MAX_CONTAINER_PORTS},
        "registry": {"maxLength": 255, "format": "registry-host"},
        "pull_policy": {"enum": ["IfNotPresent", "Always", "Never"],
                        "default": "IfNotPresent"},
    },
    "provisioner.v1.ContainerPort": {
        "container_port": {"minimum": 1, "maximum": 65535},
        "host_port": {"minimum": 0, "maximum": 65535},
        "protocol": {"enum": ["TCP", "UDP"], "default": "TCP"},
    },
    "provisioner.v1.PodSpec": {
        "containers": {"minItems": 1, "maxItems": lim.MAX_CONTAINERS},
        "cell": {"pattern": rf"^({CELL_PATH})?$"},
        "stop_grace_period": _GRACE,
        "depends_on": _DEPENDS_ON,
    },
    "provisioner.v1.DriverSpec": {
        "version": {"pattern": f"^{ARTIFACT_NAME}$"},
        "runtime_version": {"pattern": f"^{ARTIFACT_NAME}$"},
        "source": {"minLength": 1},
        "sha256": {"pattern": "^[0-9a-f]{64}$"},
        "depends_on": _DEPENDS_ON,
    },
    "provisioner.v1.PersistentExecutableSpec": {
        "command": _COMMAND,
        "depends_on": _DEPENDS_ON,
    },
}

#: Descriptions that replace a proto comment which is not true of this provisioner
#: (upstream comments of the seed protos, which are not edited). Same keys as FIELDS.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "aurae.runtime.v0.CpuController": {
        # Upstream says "Minimum: 0"; the kernel and the schema say otherwise.
        "max": (
            "CPU time the cell's tasks may use in each period of 1,000,000 microseconds "
            "(1 s), in microseconds (cgroup v2 cpu.max; v1 cpu.cfs_quota_us).\n\n"
            f"* Minimum: {lim.MIN_CPU_MAX_US} (the kernel refuses a quota below 1 ms)\n"
            f"* Maximum: {lim.MAX_CPU_MAX_US} (8192 CPUs' worth)\n\n"
            "Not set: no limit (the cgroup's default, the literal \"max\")."
        ),
    },
}

REQUIRED: dict[str, list[str]] = {
    "provisioner.v1.ObjectMeta": ["name"],
    "provisioner.v1.ExecutableSpec": ["command"],
    "provisioner.v1.ContainerSpec": ["name", "image"],
    "provisioner.v1.PodSpec": ["containers"],
    "provisioner.v1.DriverSpec": ["version", "source"],
    "provisioner.v1.PersistentExecutableSpec": ["command"],
}

#: Manifest kinds: the spec message, the pattern of metadata.name, whether spec is required.
KINDS: dict[str, dict[str, Any]] = {
    "Cell": {
        "spec": "provisioner.v1.CellSpec",
        "name": f"^{CELL_PATH}$",
        "spec_required": False,
        "name_help": "a cell path: DNS labels joined by '/'",
    },
    "Executable": {
        "spec": "provisioner.v1.ExecutableSpec",
        "name": f"^{DNS_LABEL}$",
        "spec_required": True,
        "name_help": "a DNS label",
    },
    "Pod": {
        "spec": "provisioner.v1.PodSpec",
        "name": f"^{DNS_LABEL}$",
        "spec_required": True,
        "name_help": "a DNS label",
    },
    "Driver": {
        "spec": "provisioner.v1.DriverSpec",
        "name": f"^{ARTIFACT_NAME}$",
        "spec_required": True,
        "name_help": "a file-safe name",
    },
    "PersistentExecutable": {
        "spec": "provisioner.v1.PersistentExecutableSpec",
        "name": f"^{DNS_LABEL}$",
        "spec_required": True,
        "name_help": "a DNS label",
    },
}

#: Defaults shown to editors (documentation only; the model applies them).
DEFAULTS: dict[str, dict[str, Any]] = {
    "provisioner.v1.ExecutableSpec": {
        "restart_policy": "never",
        "stop_grace_period": "10s",
        "working_dir": "/",
    },
    "provisioner.v1.PodSpec": {"restart_policy": "never", "stop_grace_period": "10s"},
    "provisioner.v1.PersistentExecutableSpec": {"enabled": True},
}
