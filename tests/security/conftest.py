"""Fixtures for tests/security (helpers live in sec_helpers.py)."""
from __future__ import annotations

import pytest

from helpers.security import PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """CA + server cert for 127.0.0.1 (IP SAN) + gateway/central/monitor client certs,
    a server cert for the wrong host name, and an unrelated (rogue) CA."""
    p = PKI(tmp_path_factory.mktemp("pki"))
    p.server = p.issue("server", "broker", server=True, ips=["127.0.0.1"], dns=["localhost"])
    p.wrong_host = p.issue("server-wrong-host", "broker.invalid", server=True, dns=["broker.invalid"])
    p.gateway = p.issue("gateway", "casegate-demo-center", server=False)
    p.central = p.issue("central", "central-platform", server=False)
    p.monitor = p.issue("monitor", "monitor-demo", server=False)
    p.rogue_client = p.issue("rogue-client", "casegate-demo-center", server=False, rogue=True)
    return p
