"""Resource names: projects/{project}/locations/{location}/{collection}/{id}."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceName:
    project: str
    location: str
    collection: str
    id: str

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/{self.collection}/{self.id}"


def model_name(project: str, location: str, model_id: str) -> str:
    return str(ResourceName(project, location, "models", model_id))


def operation_name(project: str, location: str, operation_id: str) -> str:
    return str(ResourceName(project, location, "operations", operation_id))
