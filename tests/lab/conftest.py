"""Fixtures for the lab tests (root, network namespaces, the lab cluster).

Importable without a cluster and without root: nothing here runs at import time.
"""
from __future__ import annotations

import pytest

from lab import netlab as _netlab

# ---------------------------------------------------------------------------
# Network lab (lab/netlab.py)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def netlab_leftover_check():
    """Fail the session if any lab namespace or link this process created survived.

    Namespaces of earlier runs that died without cleaning up are reaped first;
    only this process's names (``nm<pid>-...``) are checked, so parallel runs
    don't see each other's live labs.
    """
    _netlab.reap_stale()
    yield
    left = _netlab.leftovers(_netlab.session_prefix())
    assert not left, f"the lab tests left network namespaces/links behind: {left}"


@pytest.fixture
def netlab():
    """A fresh :class:`lab.netlab.Netlab`; every namespace it made is deleted
    after the test, whether it passed or not."""
    with _netlab.Netlab() as lab:
        yield lab


# ---------------------------------------------------------------------------
# Lab cluster fixtures (added below by the lead)
# ---------------------------------------------------------------------------
