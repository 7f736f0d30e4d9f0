"""Make asv's HTML work offline: its pages load jQuery, flot and bootstrap from CDNs.

On a machine without internet (this project's CI among them) those pages stay
blank.  ``localize`` fetches the same libraries from the npm registry with
``npm pack`` (cached under ``.asv/vendor``), copies them next to the pages and
points the pages at the copies.  Without npm the pages keep their CDN links.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

# CDN URL -> (npm package spec, file inside the package).  stupidtable 1.0.1 is not
# on npm; 1.1.3 keeps its API.
ASSETS = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}

# The SRI hashes name the CDN's bytes; the npm copies are checked by npm instead.
_SRI = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"')


def _pack(spec: str, cache: Path) -> Path:
    name, version = spec.rsplit("@", 1)
    tgz = cache / f"{name}-{version}.tgz"
    if not tgz.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=cache, check=True, capture_output=True, timeout=300)
    return tgz


def localize(html_dir: Path, cache: Path) -> list[str]:
    """Rewrite asv's pages under ``html_dir`` to local copies; returns the URLs rewritten."""
    if shutil.which("npm") is None:
        raise RuntimeError("npm not found: asv's pages keep loading their libraries from CDNs")
    pages = list(html_dir.glob("*.html"))
    used = {url for url in ASSETS for page in pages if url in page.read_text(errors="replace")}
    vendor = html_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    local: dict[str, str] = {}
    for url in sorted(used):
        spec, member = ASSETS[url]
        target = vendor / spec.replace("@", "-") / member
        if not target.exists():
            with tarfile.open(_pack(spec, cache)) as tar:
                data = tar.extractfile(f"package/{member}").read()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        local[url] = target.relative_to(html_dir).as_posix()
    for page in pages:
        text = page.read_text(errors="replace")
        new = text
        for url, rel in local.items():
            new = re.sub(r'(<(?:script|link)[^>]*?)"' + re.escape(url) + r'"([^>]*>)',
                         lambda m, rel=rel: _SRI.sub("", m.group(1) + f'"{rel}"' + m.group(2)), new)
        if new != text:
            page.write_text(new)
    return sorted(local)
