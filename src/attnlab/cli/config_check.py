"""Wrong-typed or out-of-range settings become one line, before any data is loaded.

``model.optimizer.lr=abc`` used to surface as a traceback from inside ``fit``, after the data was
prepared and the model built. Every key of the optimizer, scheduler, data, trainer and model nodes
is checked here against the constructor it will be passed to (``inspect.signature`` of the
``_target_``, following ``**kwargs`` into base classes): its annotation, or the type of its default
when it has none. Only what a config value can be is judged (numbers, strings, booleans, lists,
dicts, None); arguments typed as other classes are left to the constructor. A few counts are also
bounded (``batch_size >= 1`` ...), and the optimizer and scheduler are built once on a dummy
parameter, so torch's own range checks (``Invalid learning rate: -1``) answer here too.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.errors import ConfigError

__all__ = ["check_config_types"]

_UNKNOWN = None  # "cannot tell": neither accepted nor refused
META_KEYS = ("task", "_target_", "_partial_", "_recursive_", "_convert_", "_args_")

# Counts that must not go below a bound, whatever their annotation says.
MINIMUM = {
    "batch_size": 1,
    "eval_batch_size": 1,
    "num_workers": 0,
    "accumulate_grad_batches": 1,
    "log_every_n_steps": 1,
    "check_val_every_n_epoch": 1,
    "max_epochs": -1,
    "max_steps": -1,
    "min_epochs": 0,
    "num_nodes": 1,
}


def _names(annotation: Any) -> str:
    """A short readable form of an annotation (``float | Tensor``)."""
    if isinstance(annotation, type):
        return annotation.__name__ if annotation is not type(None) else "null"
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_names(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    return str(getattr(origin, "__name__", None) or annotation).replace("typing.", "")


def _accepts(annotation: Any, value: Any) -> bool | None:
    """Whether a config value fits an annotation: True, False, or None when it cannot be told."""
    if annotation in (inspect.Parameter.empty, Any):
        return _UNKNOWN
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(a, value) for a in typing.get_args(annotation)]
        return True if True in verdicts else (_UNKNOWN if _UNKNOWN in verdicts else False)
    if origin is typing.Literal:
        options = typing.get_args(annotation)
        if value in options:
            return True
        # Which values a setting takes is the constructor's business; only the type is judged.
        return _UNKNOWN if any(type(value) is type(o) for o in options) else False
    if isinstance(value, Mapping) and "_target_" in value:
        return _UNKNOWN  # Hydra builds it before the call
    scalar = {
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        bool: lambda v: isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        type(None): lambda v: v is None,
    }
    if annotation in scalar:
        return scalar[annotation](value)
    container = origin or annotation
    if container in (list, tuple, typing.Sequence) or getattr(container, "__name__", "") in ("Sequence", "Iterable"):
        return isinstance(value, (list, tuple)) or _UNKNOWN
    if container in (dict, typing.Mapping) or getattr(container, "__name__", "") == "Mapping":
        return isinstance(value, Mapping) or _UNKNOWN
    if getattr(annotation, "__module__", "").startswith("torch") and getattr(annotation, "__name__", "") == "Tensor":
        return False  # a config value is never a tensor
    return _UNKNOWN


def _annotation(param: inspect.Parameter, func: Callable[..., Any]) -> Any:
    """The parameter's annotation as an object (string annotations evaluated in their module),
    or the type of its default when it has none."""
    annotation = param.annotation
    if isinstance(annotation, str):
        module = sys.modules.get(getattr(func, "__module__", ""), None)
        namespace = {**vars(typing), **(vars(module) if module else {})}
        try:
            annotation = eval(annotation, namespace)
        except Exception:  # noqa: BLE001 - names only imported for type checkers
            return inspect.Parameter.empty
    if annotation is inspect.Parameter.empty and param.default not in (inspect.Parameter.empty, None):
        annotation = float if type(param.default) is float else type(param.default)
    return annotation


def _parameters(target: Any) -> tuple[dict[str, tuple[inspect.Parameter, Callable[..., Any]]], bool]:
    """``{name: (parameter, the function declaring it)}`` of a class or function, following
    ``**kwargs`` into base classes; and whether unknown keywords are still accepted."""
    found: dict[str, tuple[inspect.Parameter, Callable[..., Any]]] = {}
    chain = [target]
    if isinstance(target, type):
        chain = [vars(c)["__init__"] for c in target.__mro__ if "__init__" in vars(c)]
    for func in chain:
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return found, True
        var_kw = False
        for name, param in params.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                var_kw = True
            elif name not in found and name != "self" and param.kind is not inspect.Parameter.VAR_POSITIONAL:
                found[name] = (param, func)
        if not var_kw:
            return found, False
        if func is object.__init__:
            break
    return found, True


def _errors_for(path: str, node: Mapping[str, Any], target: Any, skip: tuple[str, ...] = ()) -> Iterator[str]:
    """One message per key of ``node`` that ``target``'s signature refuses."""
    params, open_kwargs = _parameters(target)
    name = getattr(target, "__qualname__", str(target))
    for key, value in node.items():
        if key in META_KEYS or key in skip:
            continue
        if key not in params:
            if not open_kwargs:
                yield f"{path}.{key}: {name} has no argument {key!r}"
            continue
        annotation = _annotation(*params[key])
        if _accepts(annotation, value) is False:
            yield f"{path}.{key}={value!r}: expected {_names(annotation)} ({name} argument {key!r})"
        elif key in MINIMUM and isinstance(value, int) and not isinstance(value, bool) and value < MINIMUM[key]:
            yield f"{path}.{key}={value!r}: expected an int >= {MINIMUM[key]}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trial_build(node: Mapping[str, Any], target: Any, optimizer: Any) -> Any:
    """Build the optimizer (``optimizer`` None: on one dummy parameter) or the scheduler (on that
    optimizer, with a placeholder length when the trainer would fill it in) once, so that torch's
    own value checks answer before any data is loaded. Raises what the constructor raises."""
    import torch

    kwargs = {k: v for k, v in node.items() if k not in META_KEYS}
    if optimizer is None:
        return target(params=[torch.nn.Parameter(torch.zeros(1))], **kwargs)
    params = inspect.signature(target).parameters
    length = {k: 1_000_000 for k in ("total_steps", "T_max") if k in params and k not in kwargs}
    return target(optimizer=optimizer, **kwargs, **length)


def _check_optimization(model: Mapping[str, Any]) -> list[str]:
    """Type errors in ``model.optimizer`` / ``model.scheduler``, else what building them once says."""
    from hydra.utils import get_object

    errors: list[str] = []
    optimizer = None
    for path in ("optimizer", "scheduler"):
        node = model.get(path)
        if not isinstance(node, Mapping) or "_target_" not in node:
            continue
        target = get_object(str(node["_target_"]))
        found = list(_errors_for(f"model.{path}", node, target, skip=("params", "optimizer")))
        errors.extend(found)
        if found or (path == "scheduler" and optimizer is None):
            continue
        try:
            built = _trial_build(node, target, optimizer)
        except Exception as exc:  # noqa: BLE001 - whatever the constructor says about these values
            errors.append(f"model.{path}: {type(exc).__name__}: {_first_line(exc)}")
            continue
        optimizer = built if path == "optimizer" else optimizer
    return errors


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def check_config_types(cfg: Mapping[str, Any] | DictConfig) -> None:
    """Raise one ConfigError listing every refused key of ``model.optimizer``, ``model.scheduler``,
    ``model`` (its scalar settings), ``data`` and ``trainer`` (whichever ``cfg`` has)."""
    from hydra.utils import get_object

    model = _plain(cfg.get("model")) or {}
    errors = _check_optimization(model)
    if model.get("_target_"):
        scalars = {k: v for k, v in model.items() if not isinstance(v, (Mapping, list))}
        errors.extend(_errors_for("model", scalars, get_object(str(model["_target_"]))))
    for path in ("data", "trainer"):
        node = _plain(cfg.get(path))
        if isinstance(node, Mapping) and node.get("_target_"):
            errors.extend(_errors_for(path, node, get_object(str(node["_target_"]))))
    if errors:
        raise ConfigError("Config error: " + "; ".join(errors))
