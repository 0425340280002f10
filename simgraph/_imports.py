"""``"package.module:Name"`` strings from configs -> the object (a user's rule, task or network builder)."""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from typing import Iterable

from .errors import ConfigError, unknown


def is_import_path(spec: object) -> bool:
    return isinstance(spec, str) and ":" in spec


@contextmanager
def search_path(paths: Iterable[str]):
    """Put ``paths`` (e.g. the config file's folder) in front of ``sys.path`` while importing."""
    added = [str(p) for p in paths if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def load_object(spec: str, what: str, paths: Iterable[str] = ()):
    """Import ``module:attr`` (``attr`` may be dotted); ConfigError naming the part that is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {spec!r} must be 'package.module:Name'")
    paths = list(paths)
    with search_path(paths):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                where = ", ".join(paths + ["the installed packages"])
                raise ConfigError(f"{what} {spec!r}: no module {exc.name!r} (searched {where})") from None
            raise ConfigError(f"{what} {spec!r}: importing {module_name!r} failed: {exc}") from None
        except SyntaxError as exc:
            raise ConfigError(f"{what} {spec!r}: {module_name!r} has a syntax error: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise unknown(f"name in module {module_name!r} for {what} {spec!r}", part, names)
        obj = getattr(obj, part)
    return obj
