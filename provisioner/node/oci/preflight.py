"""What a plan needs of this node that the manifests cannot promise: checked at plan.

A pod the plan allocates needs every container's image: a local OCI layout that
exists and has the tag, or a registry reference this node can pull (or has pulled).
``validate`` has already checked the reference's syntax (:mod:`provisioner.imageref`);
a layout path or tag missing on this node, a registry given for a local layout, or a
``Never`` pull policy for an image this node does not have would only fail at apply.
:func:`check_plan` refuses such a plan at once, naming each resource, its container
and what is wrong, and adds to each allocate step the images it will pull (``plan``
says which images it pulls). It only reads (``oci-layout``, ``index.json`` and the
image manifest of each layout, the image store's reference records); nothing is
pulled or unpacked, and no registry is contacted.
"""

from __future__ import annotations

from provisioner import records
from provisioner.errors import FailedPrecondition, ProvisionerError
from provisioner.imageref import canonical_reference, parse_image_reference, parse_registry
from provisioner.model import ContainerSpec, Kind, PodSpec, PullPolicy
from provisioner.plan.steps import Action, Plan, Step

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from provisioner.node.oci.images import ImageStore

__all__ = ["check_plan", "image_problem", "images_to_pull", "unusable_images"]


def image_problem(container: ContainerSpec, images: ImageStore | None = None) -> str | None:
    """Why this node cannot run ``container``'s image, or None when it can (a registry
    image it can pull counts as usable; ``images``, the store, tells Never apart)."""
    from provisioner.node.oci.layout import parse_reference, resolve

    text = container.image
    try:
        reference = parse_image_reference(text)
        if not reference.is_layout:  # (the registry code loads only for registry images)
            from provisioner.node.oci.registry_images import find_pulled, named

            if container.registry:
                parse_registry(container.registry)
            if container.pull_policy is PullPolicy.NEVER and (
                    images is None or find_pulled(images, text, container.registry) is None):
                return (f"{named(text, canonical_reference(text, container.registry))} "
                        "is not on this node and its pullPolicy is Never")
            return None
        if container.registry:
            return (f"image {text!r} is a local OCI layout: its registry "
                    f"{container.registry!r} has no meaning (drop it, or name a registry "
                    "image)")
        layout, tag = parse_reference(text)
        resolve(layout, tag)
    except ProvisionerError as exc:
        message = str(exc)
        return message if repr(text) in message else f"image {text!r}: {message}"
    return None


def images_to_pull(spec: PodSpec, images: ImageStore | None) -> list[str]:
    """The canonical references an allocate of ``spec`` pulls from registries: those
    with pullPolicy Always, and IfNotPresent ones this node has not pulled yet."""
    wanted: list[str] = []
    for container in spec.containers:
        if container.image.startswith(("oci:", "/")) or \
                container.pull_policy is PullPolicy.NEVER:
            continue
        try:
            canonical = canonical_reference(container.image, container.registry)
        except ProvisionerError:
            continue
        if canonical in wanted:
            continue
        from provisioner.node.oci.registry_images import find_pulled

        if container.pull_policy is PullPolicy.ALWAYS or images is None or \
                find_pulled(images, container.image, container.registry) is None:
            wanted.append(canonical)
    return wanted


def unusable_images(plan: Plan, images: ImageStore | None = None) -> list[str]:
    """One line per container of a pod the plan allocates whose image is unusable here:
    ``FILE:LINE: Pod/NAME: container C: what is wrong``."""
    problems: list[str] = []
    for step in plan.steps:
        spec = step.spec
        if step.ref.kind is not Kind.POD or step.action is not Action.ALLOCATE or not \
                isinstance(spec, PodSpec):
            continue
        for container in spec.containers:
            problem = image_problem(container, images)
            if problem:
                where = f"{spec.source}: " if spec.source.file else ""
                problems.append(f"{where}{step.ref}: container {container.name!r}: {problem}")
    return problems


def check_plan(plan: Plan, state_dir: str = "") -> Plan:
    """``plan`` if this node can carry it out as far as it can tell now (its allocate
    steps saying which images they pull); else FailedPrecondition listing every
    problem. ``state_dir``: the node's, whose image store says what was pulled.

    A plan that allocates no pod is returned as it is, and loads none of the image
    modules (a plan of cells and executables has no image to check)."""
    if not any(_allocates_pod(step) for step in plan.steps):
        return plan
    from provisioner.node.oci.images import ImageStore

    images = ImageStore(state_dir) if state_dir else None
    problems = unusable_images(plan, images)
    if problems:
        raise FailedPrecondition("this node cannot use the image of "
                                 f"{len(problems)} container(s):\n  " + "\n  ".join(problems))
    steps = tuple(_with_pulls(step, images) for step in plan.steps)
    return plan if steps == plan.steps else records.replace(plan, steps=steps)


def _allocates_pod(step: Step) -> bool:
    return step.action is Action.ALLOCATE and isinstance(step.spec, PodSpec)


def _with_pulls(step: Step, images: ImageStore | None) -> Step:
    if step.action is not Action.ALLOCATE or not isinstance(step.spec, PodSpec):
        return step
    pulls = images_to_pull(step.spec, images)
    if not pulls:
        return step
    return records.replace(step, reason=f"{step.reason}; pulls {', '.join(pulls)}")
