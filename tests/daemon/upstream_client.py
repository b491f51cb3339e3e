"""Clients generated from the *upstream* layout of the Aurae protos, not from ours.

The declarations below are written from the wire facts of ``reference/APIS.md`` (§1-§3)
in the upstream projects' own file layout and options: ``api/v0/runtime/runtime.proto``
(package ``aurae.runtime.v0``), ``api/v0/observe/observe.proto``,
``api/runtime/pod/v0/pod.proto`` (every message empty, as upstream) and the first
generation's ``meta`` / ``runtime`` / ``schedule``. They are compiled with protoc at
test time and used in a separate interpreter: their symbols have the same full names
as ours, so the two could not share one descriptor pool. A client therefore knows
nothing of the provisioner's types; what it gets back is what an upstream client gets.

:func:`run_client` runs a snippet with the generated modules importable and ``channel``
bound to the daemon's socket, and returns what the snippet printed (JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from grpc_tools import protoc

_RUNTIME_V0 = """
syntax = "proto3";
package aurae.runtime.v0;
option go_package = "github.com/aurae-runtime/ae/client/pkg/api/v0/runtime;runtimev0";
service InstanceService {}
service SpawnService {}
service PodService {
  rpc Allocate(PodServiceAllocateRequest) returns (PodServiceAllocateResponse) {}
  rpc Start(PodServiceStartRequest) returns (PodServiceStartResponse) {}
  rpc Stop(PodServiceStopRequest) returns (PodServiceStopResponse) {}
  rpc Free(PodServiceFreeRequest) returns (PodServiceFreeResponse) {}
}
message Container { string name = 1; string image = 2; string registry = 3; }
message Pod { string name = 1; }
message PodServiceAllocateRequest { Pod pod = 1; }
message PodServiceAllocateResponse {}
message PodServiceFreeRequest {}
message PodServiceFreeResponse {}
message PodServiceStartRequest { string name = 1; }
message PodServiceStartResponse {}
message PodServiceStopRequest { string pod_name = 1; string container_name = 2; }
message PodServiceStopResponse {}
service CellService {
  rpc Allocate(CellServiceAllocateRequest) returns (CellServiceAllocateResponse) {}
  rpc Free(CellServiceFreeRequest) returns (CellServiceFreeResponse) {}
  rpc Start(CellServiceStartRequest) returns (CellServiceStartResponse) {}
  rpc Stop(CellServiceStopRequest) returns (CellServiceStopResponse) {}
}
message Executable { string name = 1; string command = 2; string description = 4; }
message Cell {
  string name = 1;
  CpuController cpu = 2;
  CpusetController cpuset = 3;
  bool isolate_process = 10;
  bool isolate_network = 11;
}
message CellServiceAllocateRequest { Cell cell = 1; }
message CellServiceAllocateResponse { string cell_name = 1; bool cgroup_v2 = 2; }
message CellServiceFreeRequest { string cell_name = 1; }
message CellServiceFreeResponse {}
message CellServiceStartRequest { optional string cell_name = 1; Executable executable = 2; }
message CellServiceStartResponse { int32 pid = 1; }
message CellServiceStopRequest { optional string cell_name = 1; string executable_name = 2; }
message CellServiceStopResponse {}
message CpuController { optional uint64 weight = 1; optional int64 max = 2; }
message CpusetController { optional string cpus = 1; optional string mems = 2; }
"""

_OBSERVE_V0 = """
syntax = "proto3";
package aurae.observe.v0;
option go_package = "github.com/aurae-runtime/ae/client/pkg/api/v0/observe;observev0";
enum LogChannelType {
  LOG_CHANNEL_TYPE_UNSPECIFIED = 0;
  LOG_CHANNEL_TYPE_STDOUT = 1;
  LOG_CHANNEL_TYPE_STDERR = 2;
}
service ObserveService {
  rpc GetAuraeDaemonLogStream(GetAuraeDaemonLogStreamRequest) returns (stream LogItem) {}
  rpc GetSubProcessStream(GetSubProcessStreamRequest) returns (stream LogItem) {}
}
message GetAuraeDaemonLogStreamRequest {}
message GetSubProcessStreamRequest { LogChannelType channel_type = 1; int64 process_id = 2; }
message LogItem { string channel = 1; string line = 2; int64 timestamp = 3; }
"""

_POD_V0 = """
syntax = "proto3";
package aurae.runtime.pod.v0;
option go_package = "github.com/aurae-runtime/aurae/client-go/pkg/api/runtime/pod/v0;podv0";
service PodService {
  rpc Allocate(PodServiceAllocateRequest) returns (PodServiceAllocateResponse) {}
  rpc Start(PodServiceStartRequest) returns (PodServiceStartResponse) {}
  rpc Stop(PodServiceStopRequest) returns (PodServiceStopResponse) {}
  rpc Free(PodServiceFreeRequest) returns (PodServiceFreeResponse) {}
}
message PodServiceAllocateRequest {}
message PodServiceAllocateResponse {}
message PodServiceFreeRequest {}
message PodServiceFreeResponse {}
message Pod {}
message PodServiceStartRequest {}
message PodServiceStartResponse {}
message PodServiceStopRequest {}
message PodServiceStopResponse {}
message Container {}
"""

_META = """
syntax = "proto3";
package meta;
message AuraeMeta { string name = 1; string message = 2; }
message ProcessMeta { int32 pid = 1; }
"""

_RUNTIME_LEGACY = """
syntax = "proto3";
package runtime;
import "api/v0/meta.proto";
message Executable { meta.AuraeMeta meta = 1; string command = 3; string comment = 4; }
"""

_SCHEDULE_LEGACY = """
syntax = "proto3";
package schedule;
import "api/v0/meta.proto";
import "api/v0/runtime.proto";
service ScheduleExecutable {
  rpc Enable(runtime.Executable) returns (ExecutableEnableResponse) {}
  rpc Disable(runtime.Executable) returns (ExecutableDisableResponse) {}
  rpc Destroy(runtime.Executable) returns (ExecutableDestroyResponse) {}
}
message ExecutableEnableResponse { meta.AuraeMeta meta = 1; }
message ExecutableDisableResponse { meta.AuraeMeta meta = 1; }
message ExecutableDestroyResponse { meta.AuraeMeta meta = 1; }
"""

PROTOS = {
    "api/v0/runtime/runtime.proto": _RUNTIME_V0,
    "api/v0/observe/observe.proto": _OBSERVE_V0,
    "api/runtime/pod/v0/pod.proto": _POD_V0,
    "api/v0/meta.proto": _META,
    "api/v0/runtime.proto": _RUNTIME_LEGACY,
    "api/v0/schedule.proto": _SCHEDULE_LEGACY,
}

#: Imports every snippet gets: ``cells``, ``observe``, ``pods_v0``, ``pods``, ``schedule``
#: (stub modules), their message modules, and ``channel``.
_PRELUDE = """
import json, sys, grpc
from api.v0.runtime import runtime_pb2 as rt, runtime_pb2_grpc as rt_grpc
from api.v0.observe import observe_pb2 as ob, observe_pb2_grpc as ob_grpc
from api.runtime.pod.v0 import pod_pb2 as podv0, pod_pb2_grpc as podv0_grpc
from api.v0 import meta_pb2 as meta, runtime_pb2 as legacy_rt, schedule_pb2 as sched
from api.v0 import schedule_pb2_grpc as sched_grpc
channel = grpc.insecure_channel("unix://" + sys.argv[1])
cells = rt_grpc.CellServiceStub(channel)
pods = rt_grpc.PodServiceStub(channel)
pods_v0 = podv0_grpc.PodServiceStub(channel)
observe = ob_grpc.ObserveServiceStub(channel)
schedule = sched_grpc.ScheduleExecutableStub(channel)
def out(value):
    print(json.dumps(value), flush=True)
def error(call):
    try:
        call()
    except grpc.RpcError as exc:
        return [exc.code().name, exc.details()]
    return None
"""


def generate(directory: Path) -> Path:
    """Write the upstream-layout protos into DIRECTORY and compile them there."""
    for path, text in PROTOS.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.lstrip())
    for package in {Path(p).parent for p in PROTOS}:
        for part in (package, *package.parents):
            if str(part) != ".":
                (directory / part / "__init__.py").touch()
    code = protoc.main(["protoc", f"-I{directory}", f"--python_out={directory}",
                        f"--grpc_python_out={directory}", *PROTOS])
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on the upstream-layout protos")
    return directory


def run_client(stubs: Path, socket: str, snippet: str, timeout: float = 60) -> Any:
    """Run SNIPPET (which prints one JSON value with ``out``) against the daemon at
    SOCKET with the stubs in STUBS; the value it printed."""
    env = {**os.environ, "PYTHONPATH": str(stubs)}
    source = _PRELUDE + textwrap.dedent(snippet)
    result = subprocess.run([sys.executable, "-c", source, socket], capture_output=True,
                            text=True, timeout=timeout, env=env, cwd=stubs, check=False)
    if result.returncode != 0:
        raise AssertionError(f"upstream client failed ({result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    assert lines, f"upstream client printed nothing; stderr: {result.stderr[-2000:]}"
    return json.loads(lines[-1])
