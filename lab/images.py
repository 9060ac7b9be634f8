"""Container images for the lab's real nodes, built without a registry.

    python3 lab/images.py            build what is missing, print one image archive path per line

Three images, each a Docker image archive (what ``ctr images import`` reads) cached
under ``${NETMEND_LAB_CACHE:-~/.cache/netmend-lab}/images/``. An image's one layer is
cached by a key over what goes into it (the Debian suite and package list, or the pause
source and Go version), the archive by the layer's key and this file, so a change
rebuilds only what it affects:

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
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

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


# Archives and layers of other keys go once unused for this long (seconds).
STALE_AFTER = 2 * 24 * 3600
# Bump when the way a root filesystem is made changes (its inputs are keyed already).
LAYER_RECIPE = 1


def layer_key(kind, inputs):
    """Key of an image's one layer: what goes into the root filesystem."""
    # The pause source is keyed by its content, not its path: checkouts in other folders share the cache.
    keyed = {key: value for key, value in inputs.items() if key != "source"}
    digest = hashlib.sha256(json.dumps([LAYER_RECIPE, kind, keyed], sort_keys=True).encode())
    if kind == "pause":
        with open(inputs["source"], "rb") as handle:
            digest.update(handle.read())
        digest.update(subprocess.run(["go", "version"], check=True, capture_output=True).stdout)
    return digest.hexdigest()[:16]


def _slug(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def layer_path(name):
    kind, inputs = image_specs()[name]
    return os.path.join(IMAGES, "layers", "%s-%s.tar" % (_slug(name), layer_key(kind, inputs)))


def archive_path(name):
    """The image archive: keyed by its layer and by this file (the image config it writes)."""
    digest = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as handle:
        digest.update(handle.read())
    digest.update(json.dumps([name, os.path.basename(layer_path(name))]).encode())
    return os.path.join(IMAGES, "%s-%s.tar" % (_slug(name), digest.hexdigest()[:16]))


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


def make_layer(name):
    """The image's layer (a tar of its root filesystem), built unless cached."""
    out = layer_path(name)
    if os.path.exists(out):
        os.utime(out)  # in use: see _drop_older
        return out
    kind, inputs = image_specs()[name]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    say("building the root filesystem of %s" % name)
    with tempfile.TemporaryDirectory(dir=IMAGES) as work:
        rootfs = os.path.join(work, "rootfs")
        if kind == "debian":
            debian_rootfs(rootfs, inputs["suite"], inputs["packages"])
        else:
            pause_rootfs(rootfs, inputs["source"])
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "--mtime=@0",
                        "-C", rootfs, "-cf", partial(out), "."], check=True)
    os.replace(partial(out), out)
    _drop_older(out)
    return out


def pack(name, layer, out):
    """Write a Docker image archive of ``layer`` tagged ``name`` to ``out`` (atomically).

    Like the stock images: python3 is the command (not an entrypoint, so a pod's
    ``args`` alone do not run under python3); the pause image's entrypoint is /pause."""
    kind, _inputs = image_specs()[name]
    diff_id = hashlib.sha256()
    with open(layer, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            diff_id.update(block)
    run_config = {"Env": [PATH_ENV], "WorkingDir": "/"}
    run_config.update({"Entrypoint": ["/pause"]} if kind == "pause" else {"Cmd": ["python3"]})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id.hexdigest()]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(partial(out), "w") as archive:
        for member, data in (("manifest.json", manifest), (config_name, config_bytes)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.add(layer, arcname="layer.tar")
    os.replace(partial(out), out)
    _drop_older(out)


def partial(path):
    """Where this process writes ``path`` before renaming it: labs of other checkouts may build at once."""
    return "%s.partial-%d" % (path, os.getpid())


def _drop_older(path, idle=STALE_AFTER):
    """Files of earlier keys for the same image are dead weight, once no lab has used them for a while:
    a lab of another checkout (another version of this file) may be importing one right now."""
    folder, base = os.path.split(path)
    prefix = base.rsplit("-", 1)[0] + "-"
    for old in os.listdir(folder):
        old_path = os.path.join(folder, old)
        if old.startswith(prefix) and old.endswith(".tar") and old != base:
            try:
                if time.time() - os.stat(old_path).st_mtime > idle:
                    os.unlink(old_path)
            except FileNotFoundError:
                pass


def build(name):
    """Path of the image archive, built unless cached."""
    out = archive_path(name)
    if os.path.exists(out):
        os.utime(out)  # in use: see _drop_older
    else:
        os.makedirs(IMAGES, exist_ok=True)
        pack(name, make_layer(name), out)
        say("packed %s" % name)
    return out


def main():
    for name in image_specs():
        print(build(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
