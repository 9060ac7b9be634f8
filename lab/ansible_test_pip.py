"""Stand-in for the pip bootstrap script ansible-test downloads before each sanity venv.

ansible-test creates its per-test virtualenvs without pip and runs a cached
``get_pip_<version>.py`` (fetched from a host this machine cannot reach) with pip
install arguments such as ``pip==24.2 --no-setuptools --no-wheel``. This script
does the same job with what is at hand: ``ensurepip`` puts the interpreter's
bundled pip in place, then pip installs the requested versions from the package
index. `make sanity` copies it to the cache path ansible-test looks for.
"""
from __future__ import annotations

import subprocess
import sys

# Options of the original bootstrap script that pip install itself does not take.
BOOTSTRAP_ONLY = {"--no-setuptools", "--no-wheel"}


def main(argv):
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    args = [arg for arg in argv if arg not in BOOTSTRAP_ONLY]
    return subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
