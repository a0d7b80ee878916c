"""Validate recorded resource inputs against the installed provider SDKs' own signatures.

Pulumi's mocks accept any field name, so a misspelled `oidc_token.audiance` passes every mock test
and fails only at `pulumi up`. Each resource type token maps to its SDK input class (e.g.
`gcp:pubsub/subscription:Subscription` -> `pulumi_gcp.pubsub.SubscriptionArgs`); every recorded input,
nested objects and lists included, must be one of that class's properties (by its engine name,
`@pulumi.getter(name=...)`) and have the shape its type hint says: object, list, map, string, number,
boolean, asset/archive.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import inspect
import sys
import typing
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import rpc

# type token package -> Python package of its SDK
PACKAGES = {"gcp": "pulumi_gcp", "time": "pulumiverse_time"}
_SKIP = object()  # a hint we do not check (Any)


@dataclass(frozen=True)
class Obj:
    cls: type


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


def args_class(type_token: str) -> type:
    """'gcp:pubsub/subscription:Subscription' -> pulumi_gcp.pubsub.SubscriptionArgs;
    'pulumi:providers:gcp' -> pulumi_gcp.ProviderArgs."""
    parts = type_token.split(":")
    if parts[0] == "pulumi" and parts[1] == "providers":
        return importlib.import_module(PACKAGES[parts[2]]).ProviderArgs
    package, module, name = parts[0], parts[1].split("/")[0], parts[2]
    mod = importlib.import_module(PACKAGES[package] if module == "index" else f"{PACKAGES[package]}.{module}")
    return getattr(mod, f"{name}Args")


@functools.cache
def properties(cls: type) -> dict[str, Any]:
    """Engine name -> shape, for one input class."""
    out = {}
    for _, member in inspect.getmembers(cls):
        if isinstance(member, property) and hasattr(member.fget, "_pulumi_name"):
            hint = typing.get_type_hints(member.fget, vars(sys.modules[cls.__module__]))["return"]
            out[member.fget._pulumi_name] = shape(hint, cls)
    return out


def shape(hint: Any, owner: type) -> Any:
    """A type hint of an input property, reduced to what a value must look like."""
    if isinstance(hint, typing.ForwardRef):
        hint = hint.__forward_arg__
    if isinstance(hint, str):
        if hint.startswith("Output"):
            return None
        return shape(vars(sys.modules[owner.__module__])[hint], owner)
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        options = [shape(a, owner) for a in typing.get_args(hint)]
        options = [o for o in options if o is not None]
        return options[0] if len(options) == 1 else tuple(options)
    if origin is collections.abc.Awaitable or hint is type(None):
        return None
    if origin is collections.abc.Sequence or origin is list:
        return ListOf(shape(typing.get_args(hint)[0], owner))
    if origin is collections.abc.Mapping or origin is dict:
        return MapOf(shape(typing.get_args(hint)[1], owner))
    if hint is typing.Any:
        return _SKIP
    if (isinstance(hint, type) and issubclass(hint, pulumi.Output)) or origin is pulumi.Output:
        return None  # the Output[T] alternative every input type allows
    if isinstance(hint, type) and any(isinstance(m, property) and hasattr(m.fget, "_pulumi_name")
                                      for _, m in inspect.getmembers(hint)):
        return Obj(hint)
    return hint


def _unwrap_secret(value: Any) -> Any:
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return value.get("value")
    return value


def _scalar_ok(value: Any, hint: Any) -> bool:
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type) and issubclass(hint, (pulumi.Asset, pulumi.Archive)):
        return isinstance(value, (pulumi.Asset, pulumi.Archive))
    return isinstance(hint, type) and isinstance(value, hint)


def problems(value: Any, expected: Any, path: str) -> list[str]:
    value = _unwrap_secret(value)
    if value is None or expected is _SKIP:
        return []
    if isinstance(expected, tuple):  # a union: any option that fits
        found = [problems(value, option, path) for option in expected]
        return [] if any(not p for p in found) else found[0]
    if isinstance(expected, Obj):
        if not isinstance(value, dict):
            return [f"{path}: expected an object ({expected.cls.__name__}), got {type(value).__name__}"]
        props = properties(expected.cls)
        out = []
        for key, v in value.items():
            if key not in props:
                out.append(f"{path}.{key}: no such field in {expected.cls.__name__} "
                           f"(has: {', '.join(sorted(props))})")
            else:
                out += problems(v, props[key], f"{path}.{key}")
        return out
    if isinstance(expected, ListOf):
        if not isinstance(value, (list, tuple)):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in problems(v, expected.item, f"{path}[{i}]")]
    if isinstance(expected, MapOf):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in problems(v, expected.value, f"{path}[{k!r}]")]
    if not _scalar_ok(value, expected):
        return [f"{path}: expected {getattr(expected, '__name__', expected)}, got {type(value).__name__} {value!r}"]
    return []


def resource_problems(type_token: str, name: str, inputs: dict[str, Any]) -> list[str]:
    """Everything about one resource's inputs the installed SDK would not accept."""
    cls = args_class(type_token)
    return problems(inputs, Obj(cls), f"{name} ({type_token})")
