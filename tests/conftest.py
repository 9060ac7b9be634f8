"""Make the collection importable as ansible_collections.netmend.k8s in every test.

`make collection` links the repository into .build/collections; when that link is
missing (a bare `pytest` run) it is created here, so imports never depend on
where the checkout lives.
"""
from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "netmend", "k8s")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # for `import lab.netlab`
