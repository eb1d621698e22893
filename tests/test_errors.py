"""Every posetune exception type crosses a process boundary (Ray pickles it) whole.

The types are found by walking the packages, so a new one cannot be forgotten: it is built
from its ``__init__`` annotations with distinct sample values, pickled, and compared field by
field. A type whose arguments cannot be sampled fails here until ``SAMPLES`` learns them.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import typing
from types import ModuleType

import pytest

PACKAGES = ("pose_core", "orchestrator", "search_spaces")


def _modules() -> list[ModuleType]:
    modules = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if not info.name.endswith("__main__"):
                modules.append(importlib.import_module(info.name))
    return modules


def _exception_types() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        for _, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.split(".")[0] in PACKAGES
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


SAMPLES: dict[object, list[object]] = {
    str: ["/data/x.json", "image id 7", "keypoints", "got NaN", "a number"],
    int: [3, 41, 5],
    float: [float("nan"), 2.5],
}


def _sample(annotation: object, used: dict[object, int]) -> object:
    """A distinct sample value for one parameter; ``X | None`` samples ``X``."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = options[0]
    if kind not in SAMPLES:
        raise AssertionError(f"add sample values for {kind!r} to SAMPLES")
    index = used.get(kind, 0)
    used[kind] = index + 1
    return SAMPLES[kind][index % len(SAMPLES[kind])]


def _example(kind: type[BaseException]) -> BaseException:
    if "__init__" not in vars(kind) or kind.__init__ is BaseException.__init__:
        return kind(f"{kind.__name__}: the file /data/x.json is broken")
    hints = typing.get_type_hints(kind.__init__)
    used: dict[object, int] = {}
    arguments = [
        _sample(hints[name], used)
        for name in list(inspect.signature(kind.__init__).parameters)[1:]
    ]
    return kind(*arguments)


TYPES = _exception_types()


def test_the_walk_finds_the_known_types() -> None:
    names = {t.__name__ for t in TYPES}
    assert {"DataError", "ConfigError", "CatalogError", "NonFiniteLossError"} <= names


@pytest.mark.parametrize("kind", TYPES, ids=lambda t: t.__name__)
def test_exception_pickles_with_its_fields(kind: type[BaseException]) -> None:
    error = _example(kind)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is kind
    assert str(copy) == str(error)
    fields = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    copied = {k: v for k, v in vars(copy).items() if not k.startswith("_")}
    # repr compares NaN samples equal to themselves.
    assert repr(copied) == repr(fields)
