"""Pod-network helpers that need no kernel: the subnet check, loopback name servers."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from provisioner.defaults import DEFAULT_POD_SUBNET
from provisioner.errors import InvalidArgument
from provisioner.node.oci.cni_etc import _is_loopback
from provisioner.node.oci.cni_pods import PodNetworks, bridge_name, check_subnet


def test_bridge_names() -> None:
    assert bridge_name("provisioner") == "provisioner0"
    assert bridge_name("short") == "prov-short"
    long = "a-much-longer-root"
    assert bridge_name(long) == "prov-" + hashlib.sha256(long.encode()).hexdigest()[:10]


def test_the_default_pod_subnet_is_valid_and_parsed_on_first_use(tmp_path: Path) -> None:
    """PodNetworks checks a subnet given at construction, but parses the default only
    when used (no ipaddress for loopback pods): the default must be valid."""
    assert str(check_subnet(DEFAULT_POD_SUBNET)) == DEFAULT_POD_SUBNET
    networks = PodNetworks(str(tmp_path), "ptest")
    assert networks.subnet == ipaddress.IPv4Network(DEFAULT_POD_SUBNET)
    assert PodNetworks(str(tmp_path), "ptest", "10.77.0.0/16").subnet.prefixlen == 16


@pytest.mark.parametrize("subnet", ["10.0.0.0/30", "10.0.0.1/24", "fd00::/64", "nope"])
def test_a_bad_subnet_is_refused_at_construction(tmp_path: Path, subnet: str) -> None:
    with pytest.raises(InvalidArgument, match="pod subnet"):
        PodNetworks(str(tmp_path), "ptest", subnet)


@pytest.mark.parametrize("text", [
    "127.0.0.1", "127.0.0.53", "127.1", "0127.0.0.1", "127.00.0.1", "127.0.0.256",
    "127.0.0.1%lo", "::1", "::1%eth0", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1",
    "fe80::1%eth0", "1.1.1.1", "10.0.0.1", "1.127.0.0", " 127.0.0.1", "", "localhost",
])
def test_a_loopback_name_server_is_what_ipaddress_says(text: str) -> None:
    """(IPv4 addresses outside 127.0.0.0/8 are told apart without importing ipaddress.)"""
    try:
        expected = ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        expected = False
    assert _is_loopback(text) is expected
