"""How a typed value travels as msgpack, derived from its type, with every field checked
on the way in.

`shape_of(T)` gives the `Shape` of a type: `encode` turns a value into what msgpack packs,
`decode` turns what msgpack unpacked (arrays as tuples) back into the value, or raises
`Malformed` saying which field is wrong and how. The types that travel:

- `int`, `bool`, `str`, `bytes`, `None`: as they are (a bool is not an int here);
- an `Enum` whose values are scalars: its value;
- an attrs class: the array of its fields, in their order;
- `tuple[X, ...]`: an array;
- `Mapping[str, X]`: a map;
- a union: the alternative the value is; decoding takes the first that accepts it;
- a type given its own `Shape` in `overrides` (a form defined elsewhere).

Shapes are made once per type, at import, so that encoding and decoding run no type
analysis.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs


class Malformed(Exception):
    """A value that does not have the shape its type requires; the message says where."""


@attrs.frozen
class Shape:
    #: the type's name, for errors
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    #: whether a value is of this type (to encode a union), and whether a wire value may
    #: be one (to decode a union)
    holds: Callable[[Any], bool]
    accepts: Callable[[Any], bool]


_SCALARS = (int, bool, str, bytes, type(None))


def shape_of(tp: Any, overrides: Mapping[type, Shape] | None = None) -> Shape:
    """The shape of `tp`; TypeError for a type that cannot travel."""
    overrides = overrides or {}
    tp = type(None) if tp is None else tp
    if tp in overrides:
        return overrides[tp]
    if tp in _SCALARS:
        return _scalar(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return _record(tp, overrides)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return _union([shape_of(arg, overrides) for arg in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _sequence(shape_of(args[0], overrides))
    if origin is Mapping and args[0] is str:
        return _mapping(shape_of(args[1], overrides))
    raise TypeError(f"no wire shape for {tp!r}")


def shown(value: Any) -> str:
    """`value` for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same(value: Any) -> Any:
    return value


def _scalar(kind: type) -> Shape:
    name = "None" if kind is type(None) else kind.__name__

    def decode(value: Any) -> Any:
        if type(value) is not kind:
            raise Malformed(f"{shown(value)} is not {name}")
        return value

    def is_kind(value: Any) -> bool:
        return type(value) is kind

    return Shape(name, _same, decode, is_kind, is_kind)


def _enum(kind: type[enum.Enum]) -> Shape:
    members = {member.value: member for member in kind}

    def decode(value: Any) -> Any:
        member = members.get(value) if type(value) in _SCALARS else None
        if member is None:
            raise Malformed(f"{shown(value)} is not a {kind.__name__}")
        return member

    return Shape(
        kind.__name__,
        lambda member: member.value,
        decode,
        lambda value: isinstance(value, kind),
        lambda value: type(value) in _SCALARS and value in members,
    )


def _record(cls: type, overrides: Mapping[type, Shape]) -> Shape:
    hints = typing.get_type_hints(cls)
    names = tuple(field.name for field in attrs.fields(cls))
    shapes = tuple(shape_of(hints[name], overrides) for name in names)
    described = f"{cls.__name__} ({', '.join(names)})" if names else f"{cls.__name__} ()"

    def encode(value: Any) -> Any:
        return [
            shape.encode(getattr(value, name)) for name, shape in zip(names, shapes, strict=True)
        ]

    def decode(value: Any) -> Any:
        if type(value) is not tuple or len(value) != len(names):
            raise Malformed(f"{shown(value)} is not {described}")
        fields = {}
        for name, shape, field in zip(names, shapes, value, strict=True):
            try:
                fields[name] = shape.decode(field)
            except Malformed as exc:
                raise Malformed(f"{cls.__name__}.{name}: {exc}") from None
        return cls(**fields)

    def accepts(value: Any) -> bool:
        return type(value) is tuple and len(value) == len(names)

    return Shape(cls.__name__, encode, decode, lambda value: isinstance(value, cls), accepts)


def _sequence(item: Shape) -> Shape:
    def decode(value: Any) -> Any:
        if type(value) is not tuple:
            raise Malformed(f"{shown(value)} is not an array")
        decoded = []
        for position, element in enumerate(value):
            try:
                decoded.append(item.decode(element))
            except Malformed as exc:
                raise Malformed(f"item {position}: {exc}") from None
        return tuple(decoded)

    return Shape(
        f"array of {item.name}",
        lambda value: [item.encode(element) for element in value],
        decode,
        lambda value: isinstance(value, tuple),
        lambda value: type(value) is tuple,
    )


def _mapping(item: Shape) -> Shape:
    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise Malformed(f"{shown(value)} is not a map")
        decoded = {}
        for key, element in value.items():
            if type(key) is not str:
                raise Malformed(f"key {shown(key)} is not str")
            try:
                decoded[key] = item.decode(element)
            except Malformed as exc:
                raise Malformed(f"{key!r}: {exc}") from None
        return decoded

    return Shape(
        f"map of {item.name}",
        lambda value: {key: item.encode(element) for key, element in value.items()},
        decode,
        lambda value: isinstance(value, Mapping),
        lambda value: type(value) is dict,
    )


def _union(alternatives: list[Shape]) -> Shape:
    names = " or ".join(shape.name for shape in alternatives)

    def encode(value: Any) -> Any:
        for shape in alternatives:
            if shape.holds(value):
                return shape.encode(value)
        raise TypeError(f"{shown(value)} is not {names}")

    def decode(value: Any) -> Any:
        for shape in alternatives:
            if shape.accepts(value):
                return shape.decode(value)
        raise Malformed(f"{shown(value)} is not {names}")

    return Shape(
        names,
        encode,
        decode,
        lambda value: any(shape.holds(value) for shape in alternatives),
        lambda value: any(shape.accepts(value) for shape in alternatives),
    )
