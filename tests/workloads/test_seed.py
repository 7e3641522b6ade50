"""The reference data seed and the migrations agree.

Migrations seed a fresh install and later ones adjust it; tests that flush the database
re-seed from workloads/seed.py. Were the two to drift, those tests would run against tiers no
installation has."""

import pytest

from workloads.models import SensitivityTier
from workloads.seed import TIERS, seed_reference_data

pytestmark = pytest.mark.django_db


def test_the_seeded_tiers_are_the_migrated_tiers():
    for values in TIERS:
        migrated = SensitivityTier.objects.get(slug=values["slug"])
        assert {name: getattr(migrated, name) for name in values} == values


def test_reseeding_an_empty_catalogue_gives_the_same_tiers():
    migrated = {
        t.slug: {f.name: getattr(t, f.name) for f in t._meta.concrete_fields if f.name != "id"}
        for t in SensitivityTier.objects.all()
    }
    from workloads.models import Workload

    Workload.objects.all().delete()
    SensitivityTier.objects.all().delete()
    seed_reference_data()
    reseeded = {
        t.slug: {f.name: getattr(t, f.name) for f in t._meta.concrete_fields if f.name != "id"}
        for t in SensitivityTier.objects.all()
    }
    assert reseeded == migrated
