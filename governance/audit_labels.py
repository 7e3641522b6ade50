"""Names for the ids an audit event stores, so a reviewer reads `tool: code-exec`, not
`tool: 5`, and labels for its choice values (`kind: Forbidden tool combination`, not
`kind: forbidden_combination`), the object's name included.

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


@lru_cache(maxsize=512)
def _choice_labels(object_type: str, field_name: str) -> dict[str, str] | None:
    """{stored value: label} for a field of an audited object that has choices."""
    try:
        field = apps.get_model(object_type)._meta.get_field(field_name)
    except (LookupError, ValueError, FieldDoesNotExist):
        return None
    choices = getattr(field, "flatchoices", None)
    return {str(value): str(label) for value, label in choices} if choices else None


# Objects whose name (`str()`, kept as the event's object_repr) starts with a choice value,
# "forbidden_combination #4": the field whose label reads better in its place.
NAMED_BY_CHOICE = {"governance.finding": "kind"}


def _object_label(event) -> str:
    """The event's object as a reviewer reads it: "Forbidden tool combination #4"."""
    field = NAMED_BY_CHOICE.get(event.object_type)
    labels = _choice_labels(event.object_type, field) if field else None
    value, sep, rest = event.object_repr.partition(" ")
    if labels and value in labels:
        return f"{labels[value]}{sep}{rest}"
    return event.object_repr


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
        event.object_label = _object_label(event)
        for side in (event.before or {}, event.after or {}):
            for name, value in side.items():
                model = _related_model(event.object_type, name)
                if model is None:
                    choices = _choice_labels(event.object_type, name)
                    if choices and isinstance(value, str) and value in choices:
                        event.value_labels.setdefault(name, {})[value] = choices[value]
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
