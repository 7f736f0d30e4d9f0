"""Shared fixtures: temporary registrations and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import linear_impls

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def planted():
    """Register implementations for one test and remove them afterwards."""
    added: list[str] = []

    def plant(name, factory, **kwargs):
        kwargs.setdefault("description", f"planted {name}")
        linear_impls.register(name, **kwargs)(factory)
        added.append(name)
        return linear_impls.get(name)

    yield plant
    for name in added:
        linear_impls.unregister(name)


def run_linbench(*args, plugins: str | None = None, timeout: float = 600, env_extra: dict | None = None):
    """Run ``python -m linear_impls`` in a fresh process; returns CompletedProcess (text)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("LINEAR_IMPLS_PLUGINS", None)
    if plugins:
        env["LINEAR_IMPLS_PLUGINS"] = plugins
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "linear_impls", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)
