"""Plugins in asv's environments: every asv run sees the registry that ``linbench check`` sees.

asv benchmarks in virtualenvs of its own, which hold torch and this project's wheel
(installed ``--no-deps``) and nothing else, and it drops ``PYTHONPATH`` on the way in
(asv 0.6's ``environment.py`` turns ``ASV_PYTHONPATH`` into ``PYTHONPATH``, and its
``benchmark.py`` shim then removes those entries from ``sys.path``).  A user's plugin
reaches the benchmarks by ``$LINBENCH_PLUGIN_PATH`` instead, a variable asv passes through
untouched and that the registry appends to ``sys.path`` before it loads plugins:

* a plugin module named in ``$LINEAR_IMPLS_PLUGINS`` and imported from a folder of its
  own: that folder;
* a plugin from an installed distribution (a ``linear_impls`` entry point, or a module in
  site-packages): the distribution is installed again, ``pip install --no-deps --target``,
  into ``.asv/plugin-packages``, from where it was installed (its ``direct_url.json``: a
  local folder or file) or as ``name==version``.  Its ``.dist-info`` on that folder
  carries the entry points, so ``importlib.metadata`` finds them inside asv.

``linbench run`` and ``linbench gate`` call :func:`environment` before asv starts and
:func:`discover` before anything is timed: asv's own discovery in its own environment,
with the implementations it found compared with this process's registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from . import registry

# Shipped in this project's own wheel, so asv builds each commit's version of them.
OWN_PACKAGES = ("linear_impls", "linbench_plugins")
OWN_DISTRIBUTION = "linbench"
PACKAGES_DIR = Path(".asv") / "plugin-packages"
# bench_linear.py raises with this prefix when a plugin does not load inside asv.
ERROR_PREFIX = "linbench: plugin error:"


class PluginError(Exception):
    """A plugin that cannot reach, or cannot load in, asv's environment: one line, exit 2."""


def outside_errors() -> list[str]:
    """The plugin errors of plugins from outside this project (a ``linbench_plugins`` module is
    versioned with each commit, so the gate judges it in each commit's own checkout)."""
    own = tuple(f"plugin {p}." for p in OWN_PACKAGES)
    return [e for e in registry.load_plugins() if not e.startswith(own)]


def _site_dirs() -> set[Path]:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    return {Path(d).resolve() for d in dirs}


def _module_folder(module: str) -> Path | None:
    """The folder a plugin module's top-level package was imported from (what goes on sys.path)."""
    top = sys.modules.get(module.split(".")[0])
    if top is None:
        return None
    paths = list(getattr(top, "__path__", []) or [])
    if paths:  # a package (a namespace package too): the folder that holds it
        return Path(paths[0]).resolve().parent
    file = getattr(top, "__file__", None)
    return Path(file).resolve().parent if file else None


def _distribution_of(module: str):
    from importlib import metadata

    names = metadata.packages_distributions().get(module.split(".")[0], [])
    for name in names:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def pip_spec(dist) -> str:
    """How pip installs ``dist`` again: its local source (folder, wheel or sdist) where it was
    installed from one, else ``name==version`` from the package index."""
    name, version = dist.metadata["Name"], dist.version
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if isinstance(direct, dict) and str(direct.get("url", "")).startswith("file:"):
        path = unquote(urlparse(direct["url"]).path)
        if os.path.exists(path):
            return path
    return f"{name}=={version}"


def plan() -> tuple[list[str], list[str]]:
    """``(folders, packages)``: what asv's environments need for the plugins this process
    loaded: folders to search, and pip specs of distributions to install."""
    folders: list[str] = []
    packages: list[str] = []
    sites = _site_dirs()
    for module, dist in registry.LOADED_PLUGINS:
        if module.split(".")[0] in OWN_PACKAGES:
            continue
        folder = _module_folder(module)
        if dist is None and (folder is None or folder in sites):
            dist = _distribution_of(module)
        if dist is not None:
            if dist.metadata["Name"] == OWN_DISTRIBUTION:
                continue
            spec = pip_spec(dist)
            if spec not in packages:
                packages.append(spec)
        elif folder is not None and str(folder) not in folders:
            folders.append(str(folder))
    return folders, packages


def environment(root: Path, log=print) -> dict[str, str]:
    """The variables that bring this process's plugins into asv's environments.

    Installs the plugins' distributions into ``root/.asv/plugin-packages`` afresh (so an
    edited plugin is measured as it is now).  Raises PluginError when pip cannot.
    """
    folders, packages = plan()
    search = registry.plugin_path() + folders
    if packages:
        target = root / PACKAGES_DIR
        shutil.rmtree(target, ignore_errors=True)
        log(f"linbench: installing plugin packages for asv's environments: {', '.join(packages)}")
        # --no-deps: asv's environments hold torch and linbench already, and pip would
        # otherwise pull this project's report-only dependencies in with every plugin.
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                               "--no-deps", "--no-compile", "--target", str(target), *packages],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PluginError(f"pip could not install the plugin packages {', '.join(packages)} for asv: {last}")
        search.append(str(target))
    if not search:
        return {}
    return {registry.PLUGIN_PATH_ENV: os.pathsep.join(dict.fromkeys(search))}


def discovered_impls(benchmarks_json: Path) -> set[str]:
    """The implementations asv's last discovery found (its ``benchmarks.json``)."""
    data = json.loads(benchmarks_json.read_text())
    found: set[str] = set()
    for bench in data.values():
        if isinstance(bench, dict) and (bench.get("param_names") or [None])[0] == "impl":
            found |= {v.strip("'\"") for v in bench["params"][0]}
    return found


def plugin_error_line(output: str) -> str | None:
    """The line bench_linear.py raised with, when a plugin failed to load inside asv."""
    for line in output.splitlines():
        m = re.search(re.escape(ERROR_PREFIX) + r".*", line)
        if m:
            return m.group(0).removeprefix("linbench: ").strip()
    return None


def discover(root: Path, asv: str, args: list[str], env: dict[str, str], results_dir: Path) -> None:
    """asv's discovery in its own environment, before anything is timed.

    Raises PluginError when a plugin does not load there, when discovery fails, or when
    an implementation this process sees is not among asv's benchmarks.
    """
    proc = subprocess.run([asv, *args, "--bench", "just-discover"], cwd=root, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    line = plugin_error_line(output)
    if line:
        raise PluginError(f"{line} (inside asv's environment)")
    if proc.returncode != 0:
        last = [x.strip() for x in output.splitlines() if x.strip()] or ["no output"]
        raise PluginError(f"asv could not discover the benchmarks (exit {proc.returncode}): {last[-1]}")
    found = discovered_impls(results_dir / "benchmarks.json")
    missing = sorted(set(registry.names()) - found)
    if missing:
        raise PluginError(
            f"asv's environment does not see {', '.join(missing)}, which linbench check sees: "
            f"put the plugin's folder on ${registry.PLUGIN_PATH_ENV}, name it in ${registry.PLUGIN_ENV}, "
            "or install it as a package with a linear_impls entry point (README, 'Adding an implementation')")
