"""Bootstrap and converge a fleet of 3 real hosts over SSH with the installed collection.

One module-scoped fleet, bootstrapped once; the tests run in file order and build on
each other (bootstrap, converge, check mode, a host down, controller side, upgrade).
Every ansible-playbook run is a real run over SSH against real sshd's in their own
network and mount namespaces (scripts/fleet.py); the daemons run for real under the
role's fallback (systemd is not PID 1 here), and the unit file is checked with
systemd-analyze.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts import fleet as fleet_script
from scripts import fleet_hosts
from tests.fleet import harness

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


@pytest.fixture(scope="module")
def bootstrapped(fleet: fleet_script.Fleet, collections: Path,
                 workdir: Path) -> harness.PlaybookRun:
    return harness.run_playbook(fleet, collections, "provisioner.node.bootstrap",
                                *harness.bootstrap_args(), cwd=workdir)


@pytest.fixture(scope="module")
def site(workdir: Path) -> Path:
    return harness.write_manifests(workdir / "site", executables=2)


def converge(fleet: fleet_script.Fleet, collections: Path, workdir: Path, source: str,
             *args: str) -> harness.PlaybookRun:
    return harness.run_playbook(fleet, collections, "provisioner.node.converge",
                                "-e", f"provisioner_manifests={source}", *args, cwd=workdir)


def resource_names(fleet: fleet_script.Fleet, host: str) -> set[str]:
    done = harness.remote_status(fleet, host)
    assert done.returncode == 0, done.stderr
    return {r["name"] for r in json.loads(done.stdout)["resources"]}


def sleeping_pids(fleet: fleet_script.Fleet, host: str) -> set[int]:
    """The pids of the host's executables (``sleep``), found in its cgroup root."""
    cgroups = fleet_hosts.cgroup_dirs(fleet.host(host).cgroup_root)
    return {pid for pid in fleet_hosts.pids_in_cgroups(cgroups)
            if Path(f"/proc/{pid}/comm").exists()
            and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"}


def test_bootstrap_starts_a_secured_daemon_on_every_host(
        fleet: fleet_script.Fleet, bootstrapped: harness.PlaybookRun) -> None:
    assert bootstrapped.all_green(), bootstrapped.output[-4000:]
    assert set(bootstrapped.recap) == {"h1", "h2", "h3"}
    assert all(n > 0 for n in bootstrapped.changed().values())
    for host in ("h1", "h2", "h3"):
        key = harness.host_path(fleet, host, "/etc/provisioner/pki/server.key")
        assert key.stat().st_mode & 0o777 == 0o600
        # the fallback really runs the daemon (systemd is not PID 1 here)
        pid = int(harness.host_path(fleet, host, "/run/provisioner/daemon.pid").read_text())
        assert "daemon" in Path(f"/proc/{pid}/cmdline").read_text()
        assert not harness.host_path(
            fleet, host, "/etc/systemd/system/provisioner-daemon.service").exists()
        assert resource_names(fleet, host) == set()  # mTLS from the controller works
    pki = Path(fleet.run_dir, "inventory", "pki")
    # a client without a certificate is refused during the handshake
    refused = harness.remote_status(fleet, "h1", "--tls-ca", str(pki / "ca.crt"))
    assert refused.returncode != 0


def test_the_unit_file_verifies_with_systemd_analyze(
        fleet: fleet_script.Fleet, bootstrapped: harness.PlaybookRun) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing")
    unit = "/opt/provisioner/provisioner-daemon.service"
    done = harness.ssh(fleet, "h1", "systemd-analyze", "verify", unit)
    assert done.returncode == 0, done.stdout + done.stderr
    text = harness.host_path(fleet, "h1", unit).read_text()
    assert "KillMode=process" in text and "Restart=on-failure" in text


def test_bootstrap_again_changes_nothing(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path,
        bootstrapped: harness.PlaybookRun) -> None:
    again = harness.run_playbook(fleet, collections, "provisioner.node.bootstrap",
                                 *harness.bootstrap_args(), cwd=workdir)
    assert again.all_green(), again.output[-4000:]
    assert again.changed() == {"h1": 0, "h2": 0, "h3": 0}, again.output[-4000:]


def test_converge_then_converge_again_changes_nothing(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path, site: Path,
        bootstrapped: harness.PlaybookRun) -> None:
    first = converge(fleet, collections, workdir, "site")
    assert first.all_green(), first.output[-4000:]
    assert all(n > 0 for n in first.changed().values())
    for host in ("h1", "h2", "h3"):
        assert {"c0", "e0", "e1"} <= resource_names(fleet, host)
    again = converge(fleet, collections, workdir, "site")
    assert again.all_green(), again.output[-4000:]
    assert again.changed() == {"h1": 0, "h2": 0, "h3": 0}


def test_check_diff_changes_nothing_on_any_host(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path, site: Path) -> None:
    edited = harness.write_manifests(workdir / "edited" / "site", executables=3)
    checked = converge(fleet, collections, workdir, str(edited), "--check", "--diff")
    assert checked.all_green(), checked.output[-4000:]
    assert all(n > 0 for n in checked.changed().values())  # it would change
    for host in ("h1", "h2", "h3"):
        assert "e2" not in resource_names(fleet, host)  # and it did not
    unchanged = converge(fleet, collections, workdir, "site")
    assert unchanged.changed() == {"h1": 0, "h2": 0, "h3": 0}


def test_a_host_without_sshd_fails_and_the_others_converge(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path, site: Path) -> None:
    edited = harness.write_manifests(workdir / "edited" / "site", executables=3)
    fleet_hosts.stop_sshd(fleet.host_dir(fleet.host("h2")), fleet.host("h2").net_inode)
    try:
        partial = converge(fleet, collections, workdir, str(edited))
    finally:
        fleet_hosts.start_sshd(fleet.host_dir(fleet.host("h2")), fleet.host("h2").holder_pid,
                               fleet.host("h2").address)
    assert partial.returncode != 0
    assert partial.recap["h2"].unreachable == 1
    for host in ("h1", "h3"):
        assert partial.recap[host].failed == 0 and partial.recap[host].changed > 0
        assert "e2" in resource_names(fleet, host)
    assert "e2" not in resource_names(fleet, "h2")
    healed = converge(fleet, collections, workdir, str(edited))
    assert healed.all_green(), healed.output[-4000:]
    assert healed.changed() == {"h1": 0, "h2": 1, "h3": 0}
    assert "e2" in resource_names(fleet, "h2")


def test_modules_on_the_controller_reach_each_daemon_over_mutual_tls(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path) -> None:
    remote = harness.write_manifests(workdir / "remote", executables=1, cells=1,
                                     command="sleep 100000", prefix="remote-")
    pki = Path(fleet.run_dir, "inventory", "pki")
    tls = ["-e", "provisioner_from_controller=true",
           "-e", "provisioner_target={{ ansible_host }}:7443",
           "-e", f"provisioner_tls_ca={pki / 'ca.crt'}",
           "-e", f"provisioner_tls_cert={pki / 'ansible.crt'}",
           "-e", f"provisioner_tls_key={pki / 'ansible.key'}"]
    first = converge(fleet, collections, workdir, str(remote), *tls)
    assert first.all_green(), first.output[-4000:]
    assert all(n > 0 for n in first.changed().values())
    # the same set seen from the node side (unix socket): nothing to do
    node_side = converge(fleet, collections, workdir, str(remote))
    assert node_side.all_green(), node_side.output[-4000:]
    assert node_side.changed() == {"h1": 0, "h2": 0, "h3": 0}
    assert {"remote-c0", "remote-e0"} <= resource_names(fleet, "h3")


def test_an_upgrade_restarts_the_daemon_and_adopts_what_runs(
        fleet: fleet_script.Fleet, collections: Path, workdir: Path,
        tmp_path: Path) -> None:
    before = sleeping_pids(fleet, "h1")
    assert len(before) >= 3
    pid_file = harness.host_path(fleet, "h1", "/run/provisioner/daemon.pid")
    daemon_before = pid_file.read_text()
    newer = tmp_path / "provisioner-src"  # a copy of the sources with a version bump
    newer.mkdir()
    shutil.copy(harness.REPO / "README.md", newer / "README.md")
    shutil.copytree(harness.REPO / "requirements", newer / "requirements")
    shutil.copytree(harness.REPO / "provisioner", newer / "provisioner",
                    ignore=shutil.ignore_patterns("__pycache__", "provisioner-shim"))
    pyproject = (harness.REPO / "pyproject.toml").read_text()
    (newer / "pyproject.toml").write_text(pyproject.replace('version = "0.1.0"',
                                                            'version = "0.1.1"', 1))
    upgraded = harness.run_playbook(
        fleet, collections, "provisioner.node.bootstrap", "--limit", "h1",
        *harness.bootstrap_args("-e", f"daemon_source_dir={newer}"), cwd=workdir)
    assert upgraded.all_green(), upgraded.output[-4000:]
    assert upgraded.recap["h1"].changed > 0
    assert pid_file.read_text() != daemon_before  # a new daemon ...
    assert sleeping_pids(fleet, "h1") == before  # ... adopted the running executables
    site_packages = harness.host_path(fleet, "h1", "/opt/provisioner/lib")
    assert list(site_packages.glob("python3*/site-packages/provisioner-0.1.1.dist-info"))
    assert {"e0", "e1", "e2"} <= resource_names(fleet, "h1")
