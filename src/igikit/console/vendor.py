"""Browser libraries the console serves itself (no CDN): three.js for the 3D navigation scene.

three.js comes from npm at build time: the repository's ``package.json`` pins it and
``make install`` runs ``npm ci --omit=dev``, which puts it in ``node_modules/`` at the repository
root. The console finds that folder from the installed package (an editable install lives inside
the repository), from ``$IGIKIT_NODE_MODULES``, or from the working directory, and serves three
files under ``/vendor/``:

* ``three.module.js`` and ``three.core.js``: the ES-module build (the first imports the second);
* ``OrbitControls.js``: mouse orbit, pan and zoom, from three's examples. It imports the bare
  specifier ``'three'``, which a browser resolves only through an import map, an inline script
  the console's CSP forbids; it is served with that import pointing at ``./three.module.js``
  instead, so the page loads one copy of three.js.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

#: What ``/vendor/NAME`` serves: the file under ``node_modules/three/``.
FILES: dict[str, str] = {
    "three.module.js": "build/three.module.js",
    "three.core.js": "build/three.core.js",
    "OrbitControls.js": "examples/jsm/controls/OrbitControls.js",
}

_BARE_IMPORT = re.compile(r"""(\bfrom\s*)(['"])three\2""")


class VendorMissing(LookupError):
    """three.js is not installed where the console looks for it; the message says how to install it."""


def node_modules_candidates() -> list[Path]:
    """Folders searched for ``three/``, in order."""
    found = []
    env = os.environ.get("IGIKIT_NODE_MODULES")
    if env:
        found.append(Path(env))
    found.extend(parent / "node_modules" for parent in Path(__file__).resolve().parents)
    found.append(Path.cwd() / "node_modules")
    return found


@functools.cache
def three_dir() -> Path:
    """The installed ``three`` npm package.

    Raises
    ------
    VendorMissing
        When no candidate folder holds it.
    """
    for folder in node_modules_candidates():
        if (folder / "three" / "package.json").is_file():
            return folder / "three"
    raise VendorMissing(
        "three.js is not installed: run `npm ci --omit=dev` in the igikit repository (`make install` does), "
        "or set IGIKIT_NODE_MODULES to a node_modules folder that holds three"
    )


def three_version() -> str:
    """Version of the three.js the console serves (``VendorMissing`` when absent)."""
    return str(json.loads((three_dir() / "package.json").read_text(encoding="utf-8"))["version"])


@functools.cache
def vendor_source(name: str) -> str:
    """The JavaScript served as ``/vendor/{name}``.

    Raises
    ------
    KeyError
        ``name`` is not one of :data:`FILES`.
    VendorMissing
        three.js (or that file of it) is not installed.
    """
    path = three_dir() / FILES[name]
    if not path.is_file():
        raise VendorMissing(f"{path} is missing: reinstall three.js with `npm ci --omit=dev`")
    text = path.read_text(encoding="utf-8")
    if name == "OrbitControls.js":
        text, n = _BARE_IMPORT.subn(r"\1\2./three.module.js\2", text)
        if n == 0:
            raise VendorMissing(f"{path} does not import 'three' as expected; is this three.js version supported?")
    return text
