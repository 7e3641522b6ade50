from rest_framework import serializers

from workloads.models import Workload


class WorkloadOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Workload
        fields = [
            "slug",
            "name",
            "purpose",
            "owner",
            "model_family",
            "environment",
            "data_categories",
            "status",
            "tier",
            "classification_rationale",
            "classified_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
