"""Container images for the lab's real nodes, built without a registry.

    python3 lab/images.py            build what is missing, print one image archive path per line

Three images, each a Docker image archive (what ``ctr images import`` reads) cached
under ``${NETMEND_LAB_CACHE:-~/.cache/netmend-lab}/images/`` by a key over everything
that goes into it (this file, the Debian suite and package list, the pause source and
Go version), so a change rebuilds only that image:

- ``python:3.13-slim``: a Debian root filesystem with python3 (``debootstrap
  --variant=minbase``), tagged as the agents' default image so the roles run unchanged.
  Like the stock image it has no iptables: the masq_rule agent's default nsenter mode
  runs the node's own iptables.
- ``netmend.lab/python-iptables:3.13``: the same plus iptables, for the masq_rule
  agent's capabilities mode (the image the collection's execution environment plays).
- ``netmend.lab/pause:1``: the pod sandbox, a static Go program that sleeps until
  signalled (lab/pause/main.go).

The Debian mirror is the machine's own apt source (``NETMEND_LAB_DEBIAN_MIRROR``
overrides it). Runs as root (debootstrap).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("NETMEND_LAB_CACHE", os.path.expanduser("~/.cache/netmend-lab"))
IMAGES = os.path.join(CACHE, "images")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def versions():
    values = {}
    with open(os.path.join(HERE, "versions.env"), encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
    return values


def image_specs():
    """name -> (kind, inputs): what each image is built from."""
    v = versions()
    suite = v["DEBIAN_SUITE"]
    return {
        "python:3.13-slim": ("debian", {"suite": suite, "packages": ["python3"]}),
        "netmend.lab/python-iptables:3.13": ("debian", {"suite": suite, "packages": ["python3", "iptables"]}),
        "netmend.lab/pause:1": ("pause", {"source": os.path.join(HERE, "pause", "main.go")}),
    }


def say(message):
    print("[lab images] %s" % message, file=sys.stderr, flush=True)


def key(name, kind, inputs):
    digest = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as handle:
        digest.update(handle.read())
    digest.update(json.dumps([name, kind, inputs], sort_keys=True).encode())
    if kind == "pause":
        with open(inputs["source"], "rb") as handle:
            digest.update(handle.read())
        digest.update(subprocess.run(["go", "version"], check=True, capture_output=True).stdout)
    return digest.hexdigest()[:16]


def archive_path(name):
    kind, inputs = image_specs()[name]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return os.path.join(IMAGES, "%s-%s.tar" % (slug, key(name, kind, inputs)))


def debian_mirror():
    mirror = os.environ.get("NETMEND_LAB_DEBIAN_MIRROR")
    if mirror:
        return mirror
    sources = ["/etc/apt/sources.list"]
    folder = "/etc/apt/sources.list.d"
    if os.path.isdir(folder):
        sources += [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    for path in sources:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                found = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s*", line)
                if found:
                    return found.group(1)
    raise SystemExit("[lab images] no Debian mirror in the apt sources; set NETMEND_LAB_DEBIAN_MIRROR")


def debian_rootfs(dest, suite, packages):
    cache = os.path.join(CACHE, "debootstrap-cache")
    os.makedirs(cache, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages), "--cache-dir=" + cache,
         suite, dest, debian_mirror()],
        check=True, stdout=subprocess.DEVNULL,
    )
    if "python3" in packages and not os.path.exists(os.path.join(dest, "usr/bin/python3.13")):
        raise SystemExit("[lab images] Debian %s has no python3.13; pick the suite that does in lab/versions.env" % suite)
    # What a slim image leaves out, and what would only make the archive differ between builds.
    for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                "var/log", "tmp"):
        path = os.path.join(dest, sub)
        if os.path.isdir(path):
            shutil.rmtree(path)
            os.makedirs(path)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)


def pause_rootfs(dest, source):
    os.makedirs(dest)
    env = dict(os.environ, CGO_ENABLED="0")
    subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", os.path.join(dest, "pause"), source],
                   check=True, env=env, cwd=os.path.dirname(source))


def pack(rootfs, name, out, entrypoint):
    """Write a Docker image archive of ``rootfs`` tagged ``name`` to ``out`` (atomically)."""
    with tempfile.TemporaryDirectory(dir=IMAGES) as work:
        layer = os.path.join(work, "layer.tar")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "--mtime=@0",
                        "-C", rootfs, "-cf", layer, "."], check=True)
        diff_id = hashlib.sha256()
        with open(layer, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                diff_id.update(block)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [PATH_ENV], "Entrypoint": entrypoint, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id.hexdigest()]},
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        with open(os.path.join(work, config_name), "wb") as handle:
            handle.write(config_bytes)
        with open(os.path.join(work, "manifest.json"), "w", encoding="utf-8") as handle:
            json.dump([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}], handle)
        partial = out + ".partial"
        with tarfile.open(partial, "w") as archive:
            for member in ("manifest.json", config_name, "layer.tar"):
                archive.add(os.path.join(work, member), arcname=member)
        os.replace(partial, out)


def build(name):
    out = archive_path(name)
    if os.path.exists(out):
        return out
    kind, inputs = image_specs()[name]
    os.makedirs(IMAGES, exist_ok=True)
    say("building %s" % name)
    with tempfile.TemporaryDirectory(dir=IMAGES) as work:
        rootfs = os.path.join(work, "rootfs")
        if kind == "debian":
            debian_rootfs(rootfs, inputs["suite"], inputs["packages"])
            entrypoint = ["python3"]
        else:
            pause_rootfs(rootfs, inputs["source"])
            entrypoint = ["/pause"]
        pack(rootfs, name, out, entrypoint)
    # Archives of earlier keys for the same name are dead weight.
    prefix = os.path.basename(out).rsplit("-", 1)[0] + "-"
    for old in os.listdir(IMAGES):
        if old.startswith(prefix) and old.endswith(".tar") and old != os.path.basename(out):
            os.unlink(os.path.join(IMAGES, old))
    return out


def main():
    for name in image_specs():
        print(build(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
