"""factory-boy factories for the domain."""

import factory
from django.contrib.auth import get_user_model

from workloads.models import Entitlement, SensitivityTier, SessionPolicy, Tool, Workload


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("pw-for-tests-only")


def tier(slug: str = "internal-read") -> SensitivityTier:
    """Seeded tiers come from the data migration."""
    return SensitivityTier.objects.get(slug=slug)


class ToolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tool
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tool-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.replace("-", " ").title())
    capability_class = "downstream_api"
    risk = "medium"


class WorkloadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workload
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"workload-{n}")
    name = factory.LazyAttribute(lambda w: w.slug.replace("-", " ").title())
    purpose = "Summarise support tickets and draft replies for agents."
    owner = factory.SubFactory(UserFactory)
    model_family = "o1"
    environment = "production"
    data_categories = factory.LazyFunction(lambda: ["customer"])
    status = Workload.Status.DRAFT

    @factory.post_generation
    def session_policy(obj, create, extracted, **kwargs):
        if create:
            SessionPolicy.objects.get_or_create(workload=obj)


class ClassifiedWorkloadFactory(WorkloadFactory):
    status = Workload.Status.ACTIVE
    tier = factory.LazyFunction(lambda: tier("internal-act"))
    classification_rationale = "Acts on internal tickets."


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement

    workload = factory.SubFactory(ClassifiedWorkloadFactory)
    tool = factory.SubFactory(ToolFactory)
