"""Copy files of an npm package into the served static folder and record them in its manifest.

    python scripts/vendor_npm.py swagger-ui-dist@5.35.0 swagger-ui \
        swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt
    python scripts/vendor_npm.py --web htmx.org@2.0.11 htmx dist/htmx.min.js LICENSE
    python scripts/vendor_npm.py --web --license 0BSD htmx-ext-sse@2.2.4 htmx-ext-sse dist/sse.min.js LICENSE
    python scripts/vendor_npm.py --test axe-core@4.14.1 axe-core axe.min.js LICENSE

`--license SPDX` names the licence of a package whose package.json has no `license` field (read its LICENSE).

Pages must work on a machine with no internet, so their scripts and styles ship inside the package instead of
coming from a CDN. The files are copied unmodified from the registry's tarball (`npm pack`, which checks the
tarball against the registry's integrity hash) into src/openmvsep/api/static/<folder>/ (with --web: the web
page's src/openmvsep/web/static/vendor/<folder>/), each under its own base name, and the MANIFEST.json beside
those folders gets one entry per file: package, version, licence and sha256. With --test the files go to
tests/fixtures/vendor/<folder>/ instead: tools the browser tests inject into a page (axe-core), never served. The
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

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "openmvsep"
API_STATIC = PACKAGE / "api" / "static"  # /docs (Swagger UI)
WEB_STATIC = PACKAGE / "web" / "static" / "vendor"  # the web page's scripts
TEST_VENDOR = PACKAGE.parents[1] / "tests" / "fixtures" / "vendor"  # test-only tools (not in the package)


def vendor(spec: str, folder: str, names: list[str], static: Path = API_STATIC, license: str | None = None) -> None:
    manifest_path = static / "MANIFEST.json"
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
        license = meta.get("license") or license
        if not license:
            sys.exit(f"{spec}: package.json names no licence; read its LICENSE and pass --license SPDX")

        target = static / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        manifest = json.loads(manifest_path.read_text("utf-8")) if manifest_path.exists() else {"files": {}}
        files = {k: v for k, v in manifest["files"].items() if not k.startswith(folder + "/")}
        for name in names:
            data = (unpacked / name).read_bytes()
            base = Path(name).name  # dist/htmx.min.js -> htmx.min.js
            (target / base).write_bytes(data)
            files[f"{folder}/{base}"] = {
                "registry": "npm",
                "package": meta["name"],
                "version": meta["version"],
                "license": license,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    manifest["files"] = dict(sorted(files.items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    static, license = API_STATIC, None
    if args[:1] == ["--web"]:
        args, static = args[1:], WEB_STATIC
    elif args[:1] == ["--test"]:
        args, static = args[1:], TEST_VENDOR
    if args[:1] == ["--license"] and len(args) > 1:
        license, args = args[1], args[2:]
    if len(args) < 3:
        sys.exit(__doc__)
    vendor(args[0], args[1], args[2:], static, license)
