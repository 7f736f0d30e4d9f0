"""The registry: one record per way of computing ``y = x·Wᵀ + b``, and plugin loading.

An implementation is a *factory* ``factory(weight, bias) -> forward``: the factory
runs once, outside anything timed (it may build modules, transpose weights, ...);
only ``forward(x)`` is timed and checked.  The same closure serves the correctness
checks and the benchmarks, so what is checked is exactly what is timed.

Most implementations are one expression of ``x`` and the weight; ``register_forward``
takes that expression as a function and builds the factory, adding the bias (or
passing it, when the function takes it) in one place.  One implementation is the
baseline every speedup is measured against (``baseline=True``; ``nn_linear``).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch

from . import envvars

Forward = Callable[[torch.Tensor], torch.Tensor]
Factory = Callable[[torch.Tensor, "torch.Tensor | None"], Forward]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLUGIN_ENV = "LINEAR_IMPLS_PLUGINS"
# Folders searched for plugins, after every installed package (os.pathsep-separated).  A
# variable of linbench's own because asv's virtualenvs drop PYTHONPATH, and its benchmark
# shim then removes ASV_PYTHONPATH's entries from sys.path too (linear_impls/plugins.py).
PLUGIN_PATH_ENV = envvars.PLUGIN_PATH
ENTRY_POINT_GROUP = "linear_impls"


class RegistryError(ValueError):
    """A registration that cannot be accepted (bad name, duplicate, bad factory)."""


@dataclass(frozen=True)
class Limits:
    """What an implementation declares it does not support.

    Checks and benchmarks skip (never fail) cases outside these limits, with the
    limit as the reason.  ``None`` means "no limit".
    """

    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    max_rank: int | None = None
    # Extra bytes the implementation allocates beyond x, W, b and y, as a function
    # of (batch, in_features, out_features, itemsize): lets a sweep skip a case that
    # would not fit in memory before allocating anything.
    workspace: Callable[[int, int, int, int], int] | None = None
    # Always adds a bias: a module whose constructor takes no ``bias`` argument.
    bias_required: bool = False

    def excludes(self, *, dtype: str, device: str, rank: int, bias: bool = True) -> str | None:
        """The reason a case is outside these limits, or None if it is inside."""
        if self.bias_required and not bias:
            return "always adds a bias (its constructor takes no bias argument)"
        if self.dtypes is not None and dtype not in self.dtypes:
            return f"declared dtypes {list(self.dtypes)}"
        if self.devices is not None and device not in self.devices:
            return f"declared devices {list(self.devices)}"
        if self.max_rank is not None and rank > self.max_rank:
            return f"declared max input rank {self.max_rank}"
        return None

    def describe(self) -> str:
        parts = []
        if self.dtypes is not None:
            parts.append("dtypes=" + ",".join(self.dtypes))
        if self.devices is not None:
            parts.append("devices=" + ",".join(self.devices))
        if self.max_rank is not None:
            parts.append(f"max_rank={self.max_rank}")
        if self.workspace is not None:
            parts.append("extra memory")
        if self.bias_required:
            parts.append("bias always")
        return "; ".join(parts) or "none"


@dataclass(frozen=True)
class Impl:
    """One registered implementation."""

    name: str
    factory: Factory
    description: str
    expression: str
    limits: Limits = field(default_factory=Limits)
    source: str = "builtin"  # "builtin", or the plugin module / entry point that added it
    baseline: bool = False  # the one every speedup is measured against
    # The nn.Module class of a module implementation (``register_module``): what the drop-in
    # checks build like nn.Linear.  None for factories of given parameters.
    module: type | None = None
    # Why it is checked but never timed (None: timed like every other).
    untimed: str | None = None
    # The modules whose source its check outcomes depend on (the check cache's key); empty:
    # the factory's own.  A derived implementation (a compiled variant) names its base's too.
    key_modules: tuple[str, ...] = ()
    # ``unavailable_on(device)``: why it cannot run on a device here, None when it can (a
    # compiled variant without a C++ compiler); None: it always can.
    unavailable_on: Callable[[str], str | None] | None = None

    def unavailable(self, device: str) -> str | None:
        """Why this implementation cannot run on ``device`` here (None when it can).  Unlike
        ``limits``, a fact of this machine, not a declaration."""
        return self.unavailable_on(device) if self.unavailable_on is not None else None

    def source_modules(self) -> tuple[str, ...]:
        """The modules whose source its behaviour comes from (``key_modules``, else the factory's)."""
        return self.key_modules or (getattr(self.factory, "__module__", ""),)

    def build(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Forward:
        forward = self.factory(weight, bias)
        if not callable(forward):
            raise TypeError(f"factory of {self.name!r} returned {type(forward).__name__}, not a callable forward(x)")
        return forward


_REGISTRY: dict[str, Impl] = {}
# Set while a plugin module is being imported, so its registrations are attributed to it.
_current_source = "builtin"


def _check_factory(name: str, factory: object) -> None:
    if not callable(factory):
        raise RegistryError(f"implementation {name!r}: factory is not callable")
    try:
        inspect.signature(factory).bind(None, None)
    except TypeError as exc:
        raise RegistryError(
            f"implementation {name!r}: factory must take (weight, bias), got {getattr(factory, '__name__', factory)}"
            f"{inspect.signature(factory)}: {exc}"
        ) from None
    except ValueError:  # builtins without a signature: accept, they fail later if wrong
        pass


def register(
    name: str | None = None,
    *,
    description: str,
    expression: str | None = None,
    limits: Limits | None = None,
    baseline: bool = False,
    untimed: str | None = None,
    module: type | None = None,
    key_modules: tuple[str, ...] = (),
    unavailable_on: Callable[[str], str | None] | None = None,
) -> Callable[[Factory], Factory]:
    """Register ``factory(weight, bias) -> forward`` under ``name`` (default: the factory's own
    name); returns the factory unchanged.  ``untimed``: why it is checked but never timed
    (its cases are n/a in the benchmarks with that reason).  ``module``: set by
    ``register_module``; ``key_modules`` and ``unavailable_on``: see ``Impl``.

    >>> @register(description="x @ W.T + b, written out")
    ... def my_impl(weight, bias):
    ...     def forward(x):
    ...         return x @ weight.T + bias
    ...     return forward
    """
    if name is not None:
        _check_name(name)
    if not isinstance(description, str) or not description.strip():
        raise RegistryError(f"implementation {name or '(unnamed)'!r}: description must be a non-empty string")

    def decorator(factory: Factory) -> Factory:
        label = name if name is not None else getattr(factory, "__name__", None)
        _check_name(label)
        _check_factory(label, factory)
        if baseline:
            other = next((i.name for i in _REGISTRY.values() if i.baseline), None)
            if other is not None:
                raise RegistryError(f"implementation {label!r}: {other!r} is already the baseline")
        _REGISTRY[label] = Impl(
            name=label,
            factory=factory,
            description=description.strip(),
            expression=(expression or description).strip(),
            limits=limits or Limits(),
            source=_current_source,
            baseline=baseline,
            module=module,
            untimed=untimed,
            key_modules=tuple(key_modules),
            unavailable_on=unavailable_on,
        )
        return factory

    return decorator


class DropInError(RuntimeError):
    """A module implementation whose state does not line up with nn.Linear's: it is not timed."""


def takes_bias(cls: type) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return "bias" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build_module(cls: type, in_features: int, out_features: int, bias: bool = True):
    """``cls(in_features, out_features, bias=...)`` as nn.Linear is built; a class whose
    constructor takes no ``bias`` is built as ``cls(in_features, out_features)``."""
    if takes_bias(cls):
        return cls(in_features, out_features, bias=bias)
    return cls(in_features, out_features)


def linear_state_layout(in_features: int, out_features: int, bias: bool) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of ``nn.Linear(in_features, out_features, bias).state_dict()``."""
    layout = {"weight": (out_features, in_features)}
    if bias:
        layout["bias"] = (out_features,)
    return layout


def layout_mismatch(module, in_features: int, out_features: int, bias: bool) -> str | None:
    """How ``module``'s ``state_dict`` differs from nn.Linear's in keys and shapes (None: it does not)."""
    want = linear_state_layout(in_features, out_features, bias)
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if set(got) != set(want):
        return (f"state_dict keys {sorted(got)} are not nn.Linear's {sorted(want)} "
                f"(in_features={in_features}, out_features={out_features}, bias={bias})")
    for key, shape in want.items():
        if got[key] != shape:
            return (f"state_dict[{key!r}] has shape {list(got[key])}, nn.Linear's is {list(shape)}"
                    + (" (out_features, in_features)" if key == "weight" else ""))
    return None


def _only_parameters_on_meta(module) -> bool:
    """Whether a module built on the meta device holds no tensor but its parameters: then it
    needs nothing materialised once the given parameters replace them."""
    import torch

    for m in module.modules():
        if any(b is not None for b in m._buffers.values()):
            return False
        if any(isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter) for v in vars(m).values()):
            return False
    return True


def _module_factory(cls: type, label: str) -> Factory:
    import torch

    def factory(weight, bias):
        out_features, in_features = weight.shape
        has_bias = bias is not None
        # Built on the meta device where it can be: its own initial weights would be drawn and
        # then dropped, and asv's peak memory counts the process's whole life.
        try:
            with torch.device("meta"):
                layer = build_module(cls, in_features, out_features, has_bias)
            on_meta = _only_parameters_on_meta(layer)
        except Exception:
            on_meta = False
        if not on_meta:
            layer = build_module(cls, in_features, out_features, has_bias)
        wrong = layout_mismatch(layer, in_features, out_features, has_bias)
        if wrong:
            raise DropInError(f"{cls.__name__}: {wrong}; not timed")
        if not on_meta:
            # Buffers and anything else it holds follow the case's device and dtype.
            layer.to(device=weight.device, dtype=weight.dtype)
        # The parameters are then the given ones themselves, so gradients and in-place updates reach them.
        for key, param in (("weight", weight), ("bias", bias)):
            if param is None:
                continue
            if key not in layer._parameters:
                raise DropInError(f"{cls.__name__}: state_dict[{key!r}] is not an nn.Parameter of the module "
                                  "(a buffer?); not timed")
            setattr(layer, key, param)
        return layer

    factory.__module__, factory.__name__, factory.__qualname__ = cls.__module__, label, cls.__qualname__
    return factory


def register_module(name: str | None = None, *, description: str, expression: str | None = None,
                    limits: Limits | None = None, baseline: bool = False,
                    untimed: str | None = None) -> Callable[[type], type]:
    """Register an ``nn.Module`` class built like nn.Linear, ``cls(in_features, out_features,
    bias=True)``, under ``name`` (default: the class's name); returns the class unchanged.

    Checks and benchmarks build it, then give it their parameters under the keys of
    nn.Linear's ``state_dict`` (``weight`` (out, in), ``bias`` (out,)); the drop-in checks
    (``linear_impls.dropin``) build it as a user would and compare it with nn.Linear.

    >>> @register_module(description="x @ W.T + b in a module of my own")
    ... class MyLinear(nn.Linear):
    ...     def forward(self, x):
    ...         return x @ self.weight.T + self.bias
    """
    from torch import nn

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise RegistryError(f"register_module takes an nn.Module class, got {cls!r}")
        label = name if name is not None else cls.__name__
        lim = limits or Limits()
        if not takes_bias(cls):
            lim = replace(lim, bias_required=True)
        register(label, description=description, expression=expression or f"{cls.__name__}(in, out)(x)",
                 limits=lim, baseline=baseline, untimed=untimed, module=cls,
                 # The check cache keys on the class's module and on this one (which builds it).
                 key_modules=(cls.__module__, __name__))(_module_factory(cls, label))
        return cls

    return decorator


def register_forward(name: str | None = None, *, description: str, expression: str | None = None,
                     limits: Limits | None = None) -> Callable[[Callable], Callable]:
    """Register a forward written as one expression: ``fn(x, weight)``, to which the bias is
    added here, or ``fn(x, weight, bias)``, which gets the bias (None when there is none)
    and adds it itself (a fused ``addmm``, ``F.linear``).  Returns ``fn`` unchanged.

    >>> @register_forward(description="x @ W.T + b, written out")
    ... def my_impl(x, weight):
    ...     return x @ weight.T
    """
    def decorator(fn: Callable) -> Callable:
        label = name if name is not None else getattr(fn, "__name__", None)
        try:
            n_params = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            raise RegistryError(f"implementation {label!r}: forward must be a function of (x, weight) "
                                "or (x, weight, bias)") from None
        if n_params not in (2, 3):
            raise RegistryError(f"implementation {label!r}: forward must take (x, weight) or (x, weight, bias), "
                                f"got {getattr(fn, '__name__', fn)}{inspect.signature(fn)}")

        def factory(weight, bias):
            if n_params == 3:
                return lambda x: fn(x, weight, bias)
            if bias is None:
                return lambda x: fn(x, weight)
            return lambda x: fn(x, weight) + bias

        # Attributed to the module that wrote the expression: the check cache keys on its source.
        factory.__module__, factory.__name__, factory.__qualname__ = fn.__module__, fn.__name__, fn.__qualname__
        register(label, description=description, expression=expression, limits=limits)(factory)
        return fn

    return decorator


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(f"implementation name {name!r} is not a plain identifier (letters, digits, _)")
    if name in _REGISTRY:
        raise RegistryError(f"implementation {name!r} is already registered (by {_REGISTRY[name].source})")


def baseline() -> str:
    """The name of the implementation every speedup is measured against."""
    return next((i.name for i in _REGISTRY.values() if i.baseline), "nn_linear")


def unregister(name: str) -> None:
    """Remove an implementation (for tests that plant temporary ones)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Sorted names of every registered implementation."""
    return sorted(_REGISTRY)


def timed_names() -> list[str]:
    """Sorted names of the implementations the benchmarks time (all but the ``untimed`` ones)."""
    return [n for n in names() if not _REGISTRY[n].untimed]


def get(name: str) -> Impl:
    """The record of ``name``; unknown names raise KeyError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown implementation {name!r}; known: {', '.join(names())}") from None


def select(patterns: Iterable[str] | None) -> list[Impl]:
    """Implementations matching any of the names or shell globs (all when none given).

    Raises KeyError naming the pattern when one matches nothing.
    """
    patterns = list(patterns or [])
    if not patterns:
        return [_REGISTRY[n] for n in names()]
    chosen: dict[str, Impl] = {}
    for pattern in patterns:
        hits = [n for n in names() if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise KeyError(f"no implementation matches {pattern!r}; known: {', '.join(names())}")
        for n in hits:
            chosen[n] = _REGISTRY[n]
    return [chosen[n] for n in sorted(chosen)]


# --- plugins -------------------------------------------------------------------------

PLUGIN_ERRORS: list[str] = []
# What each plugin that loaded came from: (module name, the distribution of an entry point
# or None), for linear_impls.plugins to bring the same plugins into asv's environments.
LOADED_PLUGINS: list[tuple[str, object]] = []
_plugins_loaded = False


def plugin_path() -> list[str]:
    """``$LINBENCH_PLUGIN_PATH``'s folders, absolute (asv runs benchmarks in other folders)."""
    return [os.path.abspath(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p.strip()]


def _import_plugin(label: str, module: str, load: Callable[[], object], dist: object = None) -> None:
    global _current_source
    before = set(_REGISTRY)
    _current_source = label
    try:
        load()
        LOADED_PLUGINS.append((module, dist))
    except BaseException as exc:  # a plugin must never take the built-ins down
        if isinstance(exc, KeyboardInterrupt):
            raise
        # Keep what the plugin registered before failing out: it may be half-made.
        for n in set(_REGISTRY) - before:
            del _REGISTRY[n]
        PLUGIN_ERRORS.append(f"plugin {label}: {type(exc).__name__}: {exc}")
    finally:
        _current_source = "builtin"


def load_plugins() -> list[str]:
    """Import plugins from the ``linear_impls`` entry points and ``$LINEAR_IMPLS_PLUGINS``.

    Returns the list of plugin errors (also kept in ``PLUGIN_ERRORS``); a failing
    plugin is reported, never raised.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return list(PLUGIN_ERRORS)
    _plugins_loaded = True
    from importlib.metadata import entry_points

    # Appended, not prepended: a folder there never shadows the installed linear_impls or
    # torch, and packages installed into it (``pip install --target``) add entry points.
    for folder in plugin_path():
        if folder not in sys.path:
            sys.path.append(folder)

    try:
        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # broken metadata of some unrelated distribution
        PLUGIN_ERRORS.append(f"entry points {ENTRY_POINT_GROUP!r}: {exc}")
        eps = []
    for ep in eps:
        _import_plugin(f"entry point {ep.name} ({ep.value})", ep.module, ep.load, getattr(ep, "dist", None))
    for module in os.environ.get(PLUGIN_ENV, "").split(","):
        module = module.strip()
        if not module:
            continue
        if module in sys.modules:  # imported (and so registered) before us
            continue
        _import_plugin(module, module, lambda m=module: importlib.import_module(m))
    return list(PLUGIN_ERRORS)
