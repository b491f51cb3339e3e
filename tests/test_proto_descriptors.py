"""Pin the wire contract of every API we serve: services, methods, fields, enums.

The seed APIs must stay wire-compatible with the upstream projects (Aurae, rkt,
Atomix): a renumbered, retyped, added or removed field breaks real clients. The
tables below are written by hand from the reference APIS.md and the seed docs and are
compared, exactly, with the descriptors of the generated modules.

Table conventions, to keep them short:
- A message is a tuple of (field name, number, type spec). The type spec is a scalar
  type ("string", "sint32", ...) or a message name, optionally preceded by
  "repeated", "optional" (proto3 optional) or "oneof:NAME", and "enum" before an
  enum type. A name without a dot is in the table's own package.
- A method is "Request -> Response", with "stream " before a streamed side; names
  without a dot are in the service's package.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor_pb2 import DescriptorProto, FieldDescriptorProto

FileProto = descriptor_pb2.FileDescriptorProto
# (name, number, type, repeated, proto3 optional, oneof, message/enum type full name)
Field = tuple[str, int, str, bool, bool, str, str]
Method = tuple[str, str, str]  # (input full name, output full name, streaming kind)

# Proto file -> package. Every generated module, so every one is imported and checked.
FILES = {
    "aurae/runtime/v0/runtime.proto": "aurae.runtime.v0",
    "aurae/discovery/v0/discovery.proto": "aurae.discovery.v0",
    "aurae/observe/v0/observe.proto": "aurae.observe.v0",
    "aurae/runtime/pod/v0/pod.proto": "aurae.runtime.pod.v0",
    "meta/meta.proto": "meta",
    "runtime/runtime.proto": "runtime",
    "schedule/schedule.proto": "schedule",
    "observe/observe.proto": "observe",
    "v1alpha/api.proto": "v1alpha",
    "atomix/runtime/v1/registry.proto": "atomix.runtime.v1",
    "provisioner/v1/manifest.proto": "provisioner.v1",
    "provisioner/v1/node.proto": "provisioner.v1",
}

SERVICES: dict[str, dict[str, str]] = {
    "aurae.runtime.v0.CellService": {
        "Allocate": "CellServiceAllocateRequest -> CellServiceAllocateResponse",
        "Free": "CellServiceFreeRequest -> CellServiceFreeResponse",
        "Start": "CellServiceStartRequest -> CellServiceStartResponse",
        "Stop": "CellServiceStopRequest -> CellServiceStopResponse",
    },
    "aurae.runtime.v0.PodService": {
        "Allocate": "PodServiceAllocateRequest -> PodServiceAllocateResponse",
        "Start": "PodServiceStartRequest -> PodServiceStartResponse",
        "Stop": "PodServiceStopRequest -> PodServiceStopResponse",
        "Free": "PodServiceFreeRequest -> PodServiceFreeResponse",
    },
    "aurae.runtime.v0.InstanceService": {},
    "aurae.runtime.v0.SpawnService": {},
    "aurae.discovery.v0.DiscoveryService": {
        "Discover": "DiscoverRequest -> DiscoverResponse",
    },
    "aurae.observe.v0.ObserveService": {
        "GetAuraeDaemonLogStream": "GetAuraeDaemonLogStreamRequest -> stream LogItem",
        "GetSubProcessStream": "GetSubProcessStreamRequest -> stream LogItem",
    },
    "aurae.runtime.pod.v0.PodService": {
        "Allocate": "PodServiceAllocateRequest -> PodServiceAllocateResponse",
        "Start": "PodServiceStartRequest -> PodServiceStartResponse",
        "Stop": "PodServiceStopRequest -> PodServiceStopResponse",
        "Free": "PodServiceFreeRequest -> PodServiceFreeResponse",
    },
    "runtime.Runtime": {
        "Exec": "Executable -> ExecutableStatus",
    },
    "schedule.Schedule": {
        "ShowEnabled": "ShowEnabledRequest -> ShowEnabledResponse",
        "ShowDisabled": "ShowDisabledRequest -> ShowDisabledResponse",
    },
    "schedule.ScheduleExecutable": {
        "Enable": "runtime.Executable -> ExecutableEnableResponse",
        "Disable": "runtime.Executable -> ExecutableDisableResponse",
        "Destroy": "runtime.Executable -> ExecutableDestroyResponse",
    },
    "observe.Observe": {
        "Status": "StatusRequest -> StatusResponse",
        "GetAuraeDaemonLogStream": "GetAuraeDaemonLogStreamRequest -> stream LogItem",
        "GetSubProcessStream": "GetSubProcessStreamRequest -> stream LogItem",
    },
    "v1alpha.PublicAPI": {
        "GetInfo": "GetInfoRequest -> GetInfoResponse",
        "ListPods": "ListPodsRequest -> ListPodsResponse",
        "InspectPod": "InspectPodRequest -> InspectPodResponse",
        "ListImages": "ListImagesRequest -> ListImagesResponse",
        "InspectImage": "InspectImageRequest -> InspectImageResponse",
        "ListenEvents": "ListenEventsRequest -> stream ListenEventsResponse",
        "GetLogs": "GetLogsRequest -> stream GetLogsResponse",
    },
    "atomix.runtime.v1.Registry": {
        "PushDriver": "stream PushDriverRequest -> PushDriverResponse",
        "PullDriver": "PullDriverRequest -> stream PullDriverResponse",
    },
    "provisioner.v1.NodeService": {
        "GetState": "GetStateRequest -> GetStateResponse",
        "Plan": "PlanRequest -> PlanResponse",
        "Apply": "ApplyRequest -> stream ApplyEvent",
        "GetLogs": "GetLogsRequest -> stream LogEntry",
        "ListImages": "ListImagesRequest -> ListImagesResponse",
        "PruneImages": "PruneImagesRequest -> PruneImagesResponse",
    },
}

_POD_V0_EMPTY = (
    "Pod Container PodServiceAllocateRequest PodServiceAllocateResponse PodServiceStartRequest"
    " PodServiceStartResponse PodServiceStopRequest PodServiceStopResponse"
    " PodServiceFreeRequest PodServiceFreeResponse"
)
_META = ("meta", 1, "meta.AuraeMeta")

# Seed packages: every message, complete.
MESSAGES: dict[str, dict[str, tuple[tuple[str, int, str], ...]]] = {
    "aurae.runtime.v0": {
        "Cell": (
            ("name", 1, "string"),
            ("cpu", 2, "CpuController"),
            ("cpuset", 3, "CpusetController"),
            ("isolate_process", 10, "bool"),
            ("isolate_network", 11, "bool"),
        ),
        "CpuController": (("weight", 1, "optional uint64"), ("max", 2, "optional int64")),
        "CpusetController": (("cpus", 1, "optional string"), ("mems", 2, "optional string")),
        "Executable": (
            ("name", 1, "string"),
            ("command", 2, "string"),
            ("description", 4, "string"),
        ),
        "CellServiceAllocateRequest": (("cell", 1, "Cell"),),
        "CellServiceAllocateResponse": (("cell_name", 1, "string"), ("cgroup_v2", 2, "bool")),
        "CellServiceFreeRequest": (("cell_name", 1, "string"),),
        "CellServiceFreeResponse": (),
        "CellServiceStartRequest": (
            ("cell_name", 1, "optional string"),
            ("executable", 2, "Executable"),
        ),
        "CellServiceStartResponse": (("pid", 1, "int32"),),
        "CellServiceStopRequest": (
            ("cell_name", 1, "optional string"),
            ("executable_name", 2, "string"),
        ),
        "CellServiceStopResponse": (),
        "Pod": (("name", 1, "string"),),
        "Container": (("name", 1, "string"), ("image", 2, "string"), ("registry", 3, "string")),
        "PodServiceAllocateRequest": (("pod", 1, "Pod"),),
        "PodServiceAllocateResponse": (),
        "PodServiceStartRequest": (("name", 1, "string"),),
        "PodServiceStartResponse": (),
        "PodServiceStopRequest": (("pod_name", 1, "string"), ("container_name", 2, "string")),
        "PodServiceStopResponse": (),
        "PodServiceFreeRequest": (),
        "PodServiceFreeResponse": (),
    },
    "aurae.discovery.v0": {
        "DiscoverRequest": (),
        "DiscoverResponse": (("healthy", 1, "bool"), ("version", 2, "string")),
    },
    "aurae.observe.v0": {
        "GetAuraeDaemonLogStreamRequest": (),
        "GetSubProcessStreamRequest": (
            ("channel_type", 1, "enum LogChannelType"),
            ("process_id", 2, "int64"),
        ),
        "LogItem": (("channel", 1, "string"), ("line", 2, "string"), ("timestamp", 3, "int64")),
    },
    "aurae.runtime.pod.v0": {name: () for name in _POD_V0_EMPTY.split()},
    "meta": {
        "AuraeMeta": (("name", 1, "string"), ("message", 2, "string")),
        "ProcessMeta": (("pid", 1, "int32"),),
    },
    "runtime": {
        "Executable": (_META, ("command", 3, "string"), ("comment", 4, "string")),
        "ExecutableStatus": (
            _META,
            ("proc", 2, "meta.ProcessMeta"),
            ("status", 3, "enum meta.Status"),
            ("stdout", 4, "string"),
            ("stderr", 5, "string"),
            ("exit_code", 6, "string"),
        ),
        "Container": (_META, ("name", 2, "string"), ("image", 3, "string")),
        "ContainerStatus": (
            _META,
            ("proc", 2, "meta.ProcessMeta"),
            ("status", 3, "enum meta.Status"),
        ),
        "Instance": (_META, ("name", 2, "string"), ("image", 3, "string")),
        "InstanceStatus": (_META, ("status", 2, "enum meta.Status")),
        "InstanceMeta": (_META,),
        "InstanceMetaStatus": (_META, ("status", 2, "enum meta.Status")),
    },
    "schedule": {
        "ShowEnabledRequest": (_META,),
        "ShowEnabledResponse": (_META, ("Executables", 2, "repeated runtime.Executable")),
        "ShowDisabledRequest": (_META,),
        "ShowDisabledResponse": (_META, ("Executables", 2, "repeated runtime.Executable")),
        "ExecutableEnableResponse": (_META,),
        "ExecutableDisableResponse": (_META,),
        "ExecutableDestroyResponse": (_META,),
    },
    "observe": {
        "StatusRequest": (_META,),
        "StatusResponse": (_META,),
        "GetAuraeDaemonLogStreamRequest": (),
        "GetSubProcessStreamRequest": (
            ("channel_type", 1, "enum LogChannelType"),
            ("process_id", 2, "int64"),
        ),
        "LogItem": (("channel", 1, "string"), ("line", 2, "string"), ("timestamp", 3, "int64")),
    },
    "v1alpha": {
        "ImageFormat": (("type", 1, "enum ImageType"), ("version", 2, "string")),
        "Image": (
            ("base_format", 1, "ImageFormat"),
            ("id", 2, "string"),
            ("name", 3, "string"),
            ("version", 4, "string"),
            ("import_timestamp", 5, "int64"),
            ("manifest", 6, "bytes"),
            ("size", 7, "int64"),
            ("annotations", 8, "repeated KeyValue"),
            ("labels", 9, "repeated KeyValue"),
        ),
        "Network": (("name", 1, "string"), ("ipv4", 2, "string"), ("ipv6", 3, "string")),
        "App": (
            ("name", 1, "string"),
            ("image", 2, "Image"),
            ("state", 3, "enum AppState"),
            ("exit_code", 4, "sint32"),
            ("annotations", 5, "repeated KeyValue"),
        ),
        "Pod": (
            ("id", 1, "string"),
            ("pid", 2, "sint32"),
            ("state", 3, "enum PodState"),
            ("apps", 4, "repeated App"),
            ("networks", 5, "repeated Network"),
            ("manifest", 6, "bytes"),
            ("annotations", 7, "repeated KeyValue"),
            ("cgroup", 8, "string"),
            ("created_at", 9, "int64"),
            ("started_at", 10, "int64"),
            ("gc_marked_at", 11, "int64"),
        ),
        "KeyValue": (("Key", 1, "string"), ("value", 2, "string")),
        "PodFilter": (
            ("ids", 1, "repeated string"),
            ("states", 2, "repeated enum PodState"),
            ("app_names", 3, "repeated string"),
            ("image_ids", 4, "repeated string"),
            ("network_names", 5, "repeated string"),
            ("annotations", 6, "repeated KeyValue"),
            ("cgroups", 7, "repeated string"),
            ("pod_sub_cgroups", 8, "repeated string"),
        ),
        "ImageFilter": (
            ("ids", 1, "repeated string"),
            ("prefixes", 2, "repeated string"),
            ("base_names", 3, "repeated string"),
            ("keywords", 4, "repeated string"),
            ("labels", 5, "repeated KeyValue"),
            ("imported_after", 6, "int64"),
            ("imported_before", 7, "int64"),
            ("annotations", 8, "repeated KeyValue"),
            ("full_names", 9, "repeated string"),
        ),
        "GlobalFlags": (
            ("dir", 1, "string"),
            ("system_config_dir", 2, "string"),
            ("local_config_dir", 3, "string"),
            ("user_config_dir", 4, "string"),
            ("insecure_flags", 5, "string"),
            ("trust_keys_from_https", 6, "bool"),
        ),
        "Info": (
            ("rkt_version", 1, "string"),
            ("appc_version", 2, "string"),
            ("api_version", 3, "string"),
            ("global_flags", 4, "GlobalFlags"),
        ),
        "Event": (
            ("type", 1, "enum EventType"),
            ("id", 2, "string"),
            ("from", 3, "string"),
            ("time", 4, "int64"),
            ("data", 5, "repeated KeyValue"),
        ),
        "EventFilter": (
            ("types", 1, "repeated enum EventType"),
            ("ids", 2, "repeated string"),
            ("names", 3, "repeated string"),
            ("since_time", 4, "int64"),
            ("until_time", 5, "int64"),
        ),
        "GetInfoRequest": (),
        "GetInfoResponse": (("info", 1, "Info"),),
        "ListPodsRequest": (("filters", 1, "repeated PodFilter"), ("detail", 2, "bool")),
        "ListPodsResponse": (("pods", 1, "repeated Pod"),),
        "InspectPodRequest": (("id", 1, "string"),),
        "InspectPodResponse": (("pod", 1, "Pod"),),
        "ListImagesRequest": (("filters", 1, "repeated ImageFilter"), ("detail", 2, "bool")),
        "ListImagesResponse": (("images", 1, "repeated Image"),),
        "InspectImageRequest": (("id", 1, "string"),),
        "InspectImageResponse": (("image", 1, "Image"),),
        "ListenEventsRequest": (("filter", 1, "EventFilter"),),
        "ListenEventsResponse": (("events", 1, "repeated Event"),),
        "GetLogsRequest": (
            ("pod_id", 1, "string"),
            ("app_name", 2, "string"),
            ("lines", 3, "int32"),
            ("follow", 4, "bool"),
            ("since_time", 5, "int64"),
            ("until_time", 6, "int64"),
        ),
        "GetLogsResponse": (("lines", 1, "repeated string"),),
    },
    "atomix.runtime.v1": {
        "DriverInfo": (("name", 1, "string"), ("version", 2, "string")),
        "RuntimeInfo": (("version", 1, "string"),),
        "PluginHeader": (("driver", 1, "DriverInfo"), ("runtime", 2, "RuntimeInfo")),
        "PluginChunk": (("data", 1, "bytes"),),
        "PluginTrailer": (("checksum", 1, "string"),),
        "PushDriverRequest": (
            ("header", 1, "oneof:request PluginHeader"),
            ("chunk", 2, "oneof:request PluginChunk"),
            ("trailer", 3, "oneof:request PluginTrailer"),
        ),
        "PushDriverResponse": (),
        "PullDriverRequest": (("header", 1, "PluginHeader"),),
        "PullDriverResponse": (
            ("chunk", 1, "oneof:response PluginChunk"),
            ("trailer", 2, "oneof:response PluginTrailer"),
        ),
    },
}

# The project's own API may grow: only these fields are pinned, and each oneof named
# here must have exactly the members listed.
PINNED_PROVISIONER_V1 = {
    "CellSpec": (
        ("cpu", 2, "aurae.runtime.v0.CpuController"),
        ("cpuset", 3, "aurae.runtime.v0.CpusetController"),
        ("isolate_process", 10, "bool"),
        ("isolate_network", 11, "bool"),
        ("depends_on", 20, "repeated string"),
    ),
    "PlanStep": (
        ("resource", 7, "Resource"),
        ("change", 8, "enum StepChange"),
    ),
    "NodeState": (
        ("generation", 1, "uint64"),
        ("node_name", 2, "string"),
        ("cgroup_v2", 3, "bool"),
        ("resources", 4, "repeated ObservedResource"),
        ("node_id", 5, "string"),
    ),
    "Resource": (
        ("cell", 10, "oneof:spec CellSpec"),
        ("executable", 11, "oneof:spec ExecutableSpec"),
        ("pod", 12, "oneof:spec PodSpec"),
        ("driver", 13, "oneof:spec DriverSpec"),
        ("persistent_executable", 14, "oneof:spec PersistentExecutableSpec"),
    ),
}

ENUMS: dict[str, dict[str, dict[str, int]]] = {
    "aurae.runtime.v0": {},
    "aurae.discovery.v0": {},
    "aurae.runtime.pod.v0": {},
    "aurae.observe.v0": {
        "LogChannelType": {
            "LOG_CHANNEL_TYPE_UNSPECIFIED": 0,
            "LOG_CHANNEL_TYPE_STDOUT": 1,
            "LOG_CHANNEL_TYPE_STDERR": 2,
        },
    },
    "meta": {
        "Status": {
            "STATUS_UNKNOWN": 0,
            "STATUS_STANDBY": 1,
            "STATUS_ACTIVE": 3,
            "STATUS_PASSIVE": 4,
            "STATUS_ERROR": 5,
            "STATUS_COMPLETE": 6,
        },
    },
    "runtime": {},
    "schedule": {},
    "observe": {"LogChannelType": {"CHANNEL_STDOUT": 0, "CHANNEL_STDERR": 1}},
    "v1alpha": {
        "ImageType": {
            "IMAGE_TYPE_UNDEFINED": 0,
            "IMAGE_TYPE_APPC": 1,
            "IMAGE_TYPE_DOCKER": 2,
            "IMAGE_TYPE_OCI": 3,
        },
        "AppState": {"APP_STATE_UNDEFINED": 0, "APP_STATE_RUNNING": 1, "APP_STATE_EXITED": 2},
        "PodState": {
            "POD_STATE_UNDEFINED": 0,
            "POD_STATE_EMBRYO": 1,
            "POD_STATE_PREPARING": 2,
            "POD_STATE_PREPARED": 3,
            "POD_STATE_RUNNING": 4,
            "POD_STATE_ABORTED_PREPARE": 5,
            "POD_STATE_EXITED": 6,
            "POD_STATE_DELETING": 7,
            "POD_STATE_GARBAGE": 8,
        },
        "EventType": {
            "EVENT_TYPE_UNDEFINED": 0,
            "EVENT_TYPE_POD_PREPARED": 1,
            "EVENT_TYPE_POD_PREPARE_ABORTED": 2,
            "EVENT_TYPE_POD_STARTED": 3,
            "EVENT_TYPE_POD_EXITED": 4,
            "EVENT_TYPE_POD_GARBAGE_COLLECTED": 5,
            "EVENT_TYPE_APP_STARTED": 6,
            "EVENT_TYPE_APP_EXITED": 7,
            "EVENT_TYPE_IMAGE_IMPORTED": 8,
            "EVENT_TYPE_IMAGE_REMOVED": 9,
        },
    },
    "atomix.runtime.v1": {},
}

# Numbers that are gaps upstream and reserved here, so they can never be reused.
RESERVED = {"meta.Status": {2}, "runtime.Executable": {2}}

SCALARS = frozenset(
    FieldDescriptorProto.Type.Name(t).removeprefix("TYPE_").lower()
    for t in FieldDescriptorProto.Type.values()
) - {"message", "enum", "group"}
STREAMING = {
    (False, False): "unary",
    (False, True): "server-stream",
    (True, False): "client-stream",
    (True, True): "bidi-stream",
}


# --- reading the descriptors ------------------------------------------------------


def module_name(path: str, suffix: str = "_pb2") -> str:
    return "provisioner._proto." + path.removesuffix(".proto").replace("/", ".") + suffix


@functools.cache
def file_proto(path: str) -> FileProto:
    """The FileDescriptorProto of a generated module (cached: deep-copy before changing it)."""
    fdp = FileProto()
    importlib.import_module(module_name(path)).DESCRIPTOR.CopyToProto(fdp)
    return fdp


def _qualify(name: str, package: str) -> str:
    return name if "." in name else f"{package}.{name}"


def _field_of(message: DescriptorProto, f: FieldDescriptorProto) -> Field:
    real_oneof = f.HasField("oneof_index") and not f.proto3_optional
    return (
        f.name,
        f.number,
        FieldDescriptorProto.Type.Name(f.type).removeprefix("TYPE_").lower(),
        f.label == FieldDescriptorProto.LABEL_REPEATED,
        f.proto3_optional,
        message.oneof_decl[f.oneof_index].name if real_oneof else "",
        f.type_name.removeprefix("."),
    )


def _walk(
    messages: Iterable[DescriptorProto], prefix: str = ""
) -> Iterator[tuple[str, DescriptorProto]]:
    for m in messages:
        yield prefix + m.name, m
        yield from _walk(m.nested_type, f"{prefix}{m.name}.")


def actual_messages(files: Iterable[FileProto]) -> dict[str, set[Field]]:
    return {
        name: {_field_of(m, f) for f in m.field}
        for fdp in files
        for name, m in _walk(fdp.message_type)
    }


def actual_enums(files: Sequence[FileProto]) -> dict[str, dict[str, int]]:
    enums = {e.name: e for fdp in files for e in fdp.enum_type}
    for fdp in files:
        for name, m in _walk(fdp.message_type):
            enums.update({f"{name}.{e.name}": e for e in m.enum_type})
    return {name: {v.name: v.number for v in e.value} for name, e in enums.items()}


def actual_services(files: Iterable[FileProto]) -> dict[str, dict[str, Method]]:
    return {
        f"{fdp.package}.{s.name}": {
            m.name: (
                m.input_type.removeprefix("."),
                m.output_type.removeprefix("."),
                STREAMING[m.client_streaming, m.server_streaming],
            )
            for m in s.method
        }
        for fdp in files
        for s in fdp.service
    }


# --- reading the tables -----------------------------------------------------------


def parse_field(package: str, name: str, number: int, spec: str) -> Field:
    *modifiers, type_ = spec.split()
    repeated = "repeated" in modifiers
    optional = "optional" in modifiers
    oneof = next((m.removeprefix("oneof:") for m in modifiers if m.startswith("oneof:")), "")
    unknown = set(modifiers) - {"repeated", "optional", "enum", f"oneof:{oneof}"}
    assert not unknown, f"bad type spec {spec!r}"
    if type_ in SCALARS:
        return (name, number, type_, repeated, optional, oneof, "")
    kind = "enum" if "enum" in modifiers else "message"
    return (name, number, kind, repeated, optional, oneof, _qualify(type_, package))


def expected_messages(
    package: str, table: Mapping[str, Iterable[tuple[str, int, str]]]
) -> dict[str, set[Field]]:
    return {
        name: {parse_field(package, *field) for field in fields} for name, fields in table.items()
    }


def parse_method(package: str, spec: str) -> Method:
    request, response = (side.strip() for side in spec.split("->"))
    streams = (request.startswith("stream "), response.startswith("stream "))
    request, response = (s.removeprefix("stream ") for s in (request, response))
    return (_qualify(request, package), _qualify(response, package), STREAMING[streams])


# --- comparing --------------------------------------------------------------------


def diff_messages(actual: dict[str, set[Field]], expected: dict[str, set[Field]]) -> list[str]:
    """Every difference, readable; empty when the two are exactly equal."""
    problems = []
    for name in sorted(actual.keys() | expected.keys()):
        if name not in actual:
            problems.append(f"{name}: message missing")
        elif name not in expected:
            problems.append(f"{name}: message not in the table")
        else:
            problems += [f"{name}: missing {f}" for f in sorted(expected[name] - actual[name])]
            problems += [f"{name}: unexpected {f}" for f in sorted(actual[name] - expected[name])]
    return problems


def diff_services(
    actual: dict[str, dict[str, Method]], expected: dict[str, dict[str, Method]]
) -> list[str]:
    problems = []
    for service in sorted(actual.keys() | expected.keys()):
        if service not in actual or service not in expected:
            where = "missing" if service not in actual else "not in the table"
            problems.append(f"{service}: service {where}")
            continue
        have, want = actual[service], expected[service]
        for method in sorted(have.keys() | want.keys()):
            if have.get(method) != want.get(method):
                problems.append(
                    f"{service}.{method}: expected {want.get(method)}, got {have.get(method)}"
                )
    return problems


def package_files(package: str) -> list[FileProto]:
    return [file_proto(path) for path, pkg in FILES.items() if pkg == package]


def diff_package(package: str, files: Iterable[FileProto]) -> list[str]:
    return diff_messages(actual_messages(files), expected_messages(package, MESSAGES[package]))


EXPECTED_SERVICES = {
    service: {m: parse_method(service.rpartition(".")[0], s) for m, s in methods.items()}
    for service, methods in SERVICES.items()
}


# --- tests ------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_generated_modules_import_with_their_file_name_and_package(path: str) -> None:
    fdp = file_proto(path)
    assert (fdp.name, fdp.package, fdp.syntax) == (path, FILES[path], "proto3")
    importlib.import_module(module_name(path, "_pb2_grpc"))


def test_services_and_methods() -> None:
    files = [file_proto(path) for path in FILES]
    assert diff_services(actual_services(files), EXPECTED_SERVICES) == []


@pytest.mark.parametrize("service", SERVICES)
def test_method_full_names_resolve_in_the_default_pool(service: str) -> None:
    for path in FILES:
        file_proto(path)  # imports the module, which registers it in the default pool
    pool = descriptor_pool.Default()
    assert pool.FindServiceByName(service).full_name == service
    for method, (request, response, kind) in EXPECTED_SERVICES[service].items():
        found = pool.FindMethodByName(f"{service}.{method}")
        assert (found.full_name, found.input_type.full_name, found.output_type.full_name) == (
            f"{service}.{method}",
            request,
            response,
        )
        assert STREAMING[found.client_streaming, found.server_streaming] == kind


@pytest.mark.parametrize("package", MESSAGES)
def test_seed_messages_are_exactly_as_upstream(package: str) -> None:
    assert diff_package(package, package_files(package)) == []


@pytest.mark.parametrize("package", ENUMS)
def test_seed_enums_are_exactly_as_upstream(package: str) -> None:
    assert actual_enums(package_files(package)) == ENUMS[package]


def test_every_seed_package_has_tables() -> None:
    seed_packages = set(FILES.values()) - {"provisioner.v1"}
    assert seed_packages == MESSAGES.keys() == ENUMS.keys()


def test_provisioner_v1_pinned_fields_and_resource_oneof() -> None:
    actual = actual_messages(package_files("provisioner.v1"))
    expected = expected_messages("provisioner.v1", PINNED_PROVISIONER_V1)
    for name, fields in expected.items():
        assert fields <= actual[name], f"{name}: {sorted(fields - actual[name])}"
        for oneof in {f[5] for f in fields} - {""}:
            members = {f for f in actual[name] if f[5] == oneof}
            assert members == {f for f in fields if f[5] == oneof}, f"{name}.{oneof}"


@pytest.mark.parametrize(("full_name", "numbers"), RESERVED.items())
def test_upstream_gaps_are_reserved(full_name: str, numbers: set[int]) -> None:
    package, _, name = full_name.rpartition(".")
    reserved: dict[str, set[int]] = {}
    for fdp in package_files(package):
        # Message reserved ranges are [start, end), enum reserved ranges [start, end].
        for m in fdp.message_type:
            reserved[m.name] = {n for r in m.reserved_range for n in range(r.start, r.end)}
        for e in fdp.enum_type:
            reserved[e.name] = {n for r in e.reserved_range for n in range(r.start, r.end + 1)}
    assert numbers <= reserved[name]


def _field(fdp: FileProto, message: str, field: str) -> FieldDescriptorProto:
    msg = next(m for m in fdp.message_type if m.name == message)
    return next(f for f in msg.field if f.name == field)


def _renumber(fdp: FileProto) -> None:
    _field(fdp, "Executable", "description").number = 3


def _retype(fdp: FileProto) -> None:
    _field(fdp, "CellServiceStartResponse", "pid").type = FieldDescriptorProto.TYPE_SINT32


def _rename(fdp: FileProto) -> None:
    _field(fdp, "Container", "registry").name = "registries"


def _make_repeated(fdp: FileProto) -> None:
    _field(fdp, "Cell", "name").label = FieldDescriptorProto.LABEL_REPEATED


def _drop_optional(fdp: FileProto) -> None:
    weight = _field(fdp, "CpuController", "weight")
    weight.proto3_optional = False
    weight.ClearField("oneof_index")


def _add_field(fdp: FileProto) -> None:
    next(m for m in fdp.message_type if m.name == "Executable").field.add(
        name="args", number=3, type=FieldDescriptorProto.TYPE_STRING
    )


def _remove_message(fdp: FileProto) -> None:
    del fdp.message_type[0]


@pytest.mark.parametrize(
    "mutate",
    [_renumber, _retype, _rename, _make_repeated, _drop_optional, _add_field, _remove_message],
)
def test_the_tables_catch_a_changed_descriptor(mutate: Callable[[FileProto], None]) -> None:
    fdp = copy.deepcopy(file_proto("aurae/runtime/v0/runtime.proto"))
    assert diff_package("aurae.runtime.v0", [fdp]) == []
    mutate(fdp)
    assert diff_package("aurae.runtime.v0", [fdp]) != []


def test_a_renumbered_field_is_reported_by_name() -> None:
    fdp = copy.deepcopy(file_proto("aurae/runtime/v0/runtime.proto"))
    _renumber(fdp)
    assert diff_package("aurae.runtime.v0", [fdp]) == [
        "Executable: missing ('description', 4, 'string', False, False, '', '')",
        "Executable: unexpected ('description', 3, 'string', False, False, '', '')",
    ]


def test_the_tables_catch_a_changed_streaming_kind() -> None:
    fdp = copy.deepcopy(file_proto("atomix/runtime/v1/registry.proto"))
    expected = {"atomix.runtime.v1.Registry": EXPECTED_SERVICES["atomix.runtime.v1.Registry"]}
    assert diff_services(actual_services([fdp]), expected) == []
    fdp.service[0].method[1].server_streaming = False  # PullDriver
    assert diff_services(actual_services([fdp]), expected) == [
        "atomix.runtime.v1.Registry.PullDriver: expected"
        " ('atomix.runtime.v1.PullDriverRequest', 'atomix.runtime.v1.PullDriverResponse',"
        " 'server-stream'), got ('atomix.runtime.v1.PullDriverRequest',"
        " 'atomix.runtime.v1.PullDriverResponse', 'unary')"
    ]
