"""Turn a Hydra/OmegaConf node into a typed dataclass, with errors that name the key."""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hasim.errors import InputError

T = TypeVar("T")


def to_typed(node: Any, schema: type[T], where: str) -> T:
    """Validate ``node`` (a DictConfig, dict or dataclass instance) against dataclass
    ``schema``: missing fields take their defaults; unknown keys and wrong types raise
    InputError naming ``where.<key>``."""
    if isinstance(node, schema):
        return node
    if is_dataclass(node) and not isinstance(node, type):
        node = OmegaConf.structured(node)
    try:
        base = OmegaConf.structured(schema)
        merged = OmegaConf.merge(base, node if node is not None else {})
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = str(e).splitlines()[0]
        raise InputError(
            f"config {where}{'.' + key if key else ''}: {msg}",
            expected=f"the fields of {schema.__name__}",
        ) from None


def pick_kind(
    node: DictConfig | dict, registry: dict[str, tuple[type, Any]], where: str
) -> tuple[type, Any]:
    """Schema and builder for ``node.kind`` in ``registry``."""
    kind = node.get("kind") if node is not None else None
    if kind not in registry:
        raise InputError(
            f"config {where}.kind={kind!r} is unknown",
            expected=f"one of {', '.join(sorted(registry))}",
        )
    return registry[kind]
