"""Names for the ids an audit event stores, so a reviewer reads `tool: code-exec`, not
`tool: 5`.

The events keep ids (stable, machine-readable, part of the hash chain); names are looked up
when a page of events is shown: one query per kind of related object on the page, however
many events it holds. An id whose object is gone stays as it was stored.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models


@lru_cache(maxsize=512)
def _related_model(object_type: str, field_name: str) -> type[models.Model] | None:
    """The model a field of an audited object points at, if it is a foreign key."""
    try:
        model = apps.get_model(object_type)
        field = model._meta.get_field(field_name)
    except (LookupError, ValueError, FieldDoesNotExist):
        return None
    return field.related_model if field.many_to_one else None


def _label(obj: models.Model) -> str:
    slug = getattr(obj, "slug", None)
    if slug:
        return slug
    if hasattr(obj, "get_username"):
        return obj.get_username()
    return str(obj)


def _pk(model: type[models.Model], value) -> object | None:
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return None
    try:
        return model._meta.pk.to_python(value)
    except ValidationError:
        return None


def audit_labels_attach(events) -> list:
    """Give each event `value_labels`: {field: {stored id as text: name}}. Returns the events
    as a list (a queryset is read once)."""
    events = list(events)
    refs = []  # (event, field, related model, stored value)
    wanted: dict[type[models.Model], set] = defaultdict(set)
    for event in events:
        event.value_labels = {}
        for side in (event.before or {}, event.after or {}):
            for name, value in side.items():
                model = _related_model(event.object_type, name)
                if model is None:
                    continue
                pk = _pk(model, value)
                if pk is not None:
                    wanted[model].add(pk)
                    refs.append((event, name, model, value))
    names: dict[tuple[type[models.Model], str], str] = {}
    for model, pks in wanted.items():
        for obj in model._default_manager.filter(pk__in=pks):
            names[(model, str(obj.pk))] = _label(obj)
    for event, name, model, value in refs:
        label = names.get((model, str(value)))
        if label is not None:
            event.value_labels.setdefault(name, {})[str(value)] = label
    return events
