"""What a plan needs of this node that the manifests cannot promise: checked at plan.

A pod the plan allocates needs every container's image here, now: a local OCI layout
that exists and has the tag. ``validate`` has already checked the reference's syntax
(:mod:`provisioner.imageref`); a registry reference is valid syntax but cannot be used
yet (no registry pulls), and a layout path or tag that is missing on this node would
only fail at apply. :func:`check_plan` refuses such a plan at once, naming each
resource, its container and what is wrong. It only reads (``oci-layout``,
``index.json`` and the image manifest of each layout); nothing is unpacked.
"""

from __future__ import annotations

from provisioner.errors import FailedPrecondition, ProvisionerError
from provisioner.imageref import parse_image_reference
from provisioner.model import ContainerSpec, Kind, PodSpec
from provisioner.node.oci.layout import NO_REGISTRY, parse_reference, resolve
from provisioner.plan.steps import Action, Plan

__all__ = ["check_plan", "image_problem", "unusable_images"]


def image_problem(container: ContainerSpec) -> str | None:
    """Why this node cannot run ``container``'s image, or None when it can."""
    text = container.image
    try:
        reference = parse_image_reference(text)
        if not reference.is_layout or container.registry:
            return (f"image {text!r}{_registry(container)}: only local OCI layouts "
                    f"(oci:/path[:tag]) are supported yet; {NO_REGISTRY}")
        layout, tag = parse_reference(text)
        resolve(layout, tag)
    except ProvisionerError as exc:
        message = str(exc)
        return message if repr(text) in message else f"image {text!r}: {message}"
    return None


def _registry(container: ContainerSpec) -> str:
    return f" (registry {container.registry!r})" if container.registry else ""


def unusable_images(plan: Plan) -> list[str]:
    """One line per container of a pod the plan allocates whose image is unusable here:
    ``FILE:LINE: Pod/NAME: container C: what is wrong``."""
    problems: list[str] = []
    for step in plan.steps:
        spec = step.spec
        if step.ref.kind is not Kind.POD or step.action is not Action.ALLOCATE or not \
                isinstance(spec, PodSpec):
            continue
        for container in spec.containers:
            problem = image_problem(container)
            if problem:
                where = f"{spec.source}: " if spec.source.file else ""
                problems.append(f"{where}{step.ref}: container {container.name!r}: {problem}")
    return problems


def check_plan(plan: Plan) -> Plan:
    """``plan`` if this node can carry it out as far as it can tell now; else
    FailedPrecondition listing every problem."""
    problems = unusable_images(plan)
    if problems:
        raise FailedPrecondition("this node cannot use the image of "
                                 f"{len(problems)} container(s):\n  " + "\n  ".join(problems))
    return plan
