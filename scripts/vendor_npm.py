"""Copy files of an npm package into the served static folder and record them in its manifest.

    python scripts/vendor_npm.py swagger-ui-dist@5.35.0 swagger-ui \
        swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt

Pages must work on a machine with no internet, so their scripts and styles ship inside the package instead of
coming from a CDN. The files are copied unmodified from the registry's tarball (`npm pack`, which checks the
tarball against the registry's integrity hash) into src/openmvsep/api/static/<folder>/, and
src/openmvsep/api/static/MANIFEST.json gets one entry per file: package, version, licence and sha256. The
tests serve every listed file and compare its bytes with that hash, so an edit by hand shows up as a failure.
Running it again for the same folder replaces that folder's files and entries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "src" / "openmvsep" / "api" / "static"
MANIFEST = STATIC / "MANIFEST.json"


def vendor(spec: str, folder: str, names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        packed = json.loads(
            subprocess.run(
                ["npm", "pack", spec, "--json", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                text=True,
                cwd=tmp,
            ).stdout
        )[0]
        with tarfile.open(Path(tmp) / packed["filename"]) as tar:
            tar.extractall(tmp, filter="data")  # npm tarballs put everything under package/
        unpacked = Path(tmp) / "package"
        meta = json.loads((unpacked / "package.json").read_text("utf-8"))

        target = STATIC / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        manifest = json.loads(MANIFEST.read_text("utf-8")) if MANIFEST.exists() else {"files": {}}
        files = {k: v for k, v in manifest["files"].items() if not k.startswith(folder + "/")}
        for name in names:
            data = (unpacked / name).read_bytes()
            (target / name).write_bytes(data)
            files[f"{folder}/{name}"] = {
                "registry": "npm",
                "package": meta["name"],
                "version": meta["version"],
                "license": meta["license"],
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    manifest["files"] = dict(sorted(files.items()))
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    vendor(sys.argv[1], sys.argv[2], sys.argv[3:])
