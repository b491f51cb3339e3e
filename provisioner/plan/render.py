"""A plan in words, the way ``provisioner plan`` prints it (and golden tests check it)."""

from __future__ import annotations

from collections import Counter

from provisioner.plan.steps import Change, Plan

MARKS = {Change.CREATE: "+", Change.UPDATE: "~", Change.REPLACE: "-/+", Change.DELETE: "-"}


def change_counts(plan: Plan) -> Counter[Change]:
    """How many resources each kind of change touches (a replaced one counts once)."""
    per_resource: dict[object, Change] = {}
    for step in plan.steps:
        per_resource.setdefault(step.ref, step.change)
    return Counter(per_resource.values())


def headline(plan: Plan) -> str:
    """The plan's one-line summary: what changes, or that nothing does."""
    counts = change_counts(plan)
    if not plan.steps:
        noun = "resource" if len(plan.unchanged) == 1 else "resources"
        return (
            f"No changes: {len(plan.unchanged)} {noun} already as declared "
            f"(node generation {plan.generation}, manifest set {plan.manifest_set!r})."
        )
    parts = [f"{counts[c]} to {c.value}" for c in Change if counts[c]]
    return (
        f"Plan: {', '.join(parts)}, {len(plan.unchanged)} unchanged "
        f"(node generation {plan.generation}, manifest set {plan.manifest_set!r})."
    )


def render_plan(plan: Plan, show_unchanged: bool = True) -> list[str]:
    """The plan as text lines: the headline, then one line per step (index, change
    mark, action, resource, reason, what it waits for) and, optionally, what is unchanged.
    """
    lines = [headline(plan)]
    for index, step in enumerate(plan.steps):
        after = f" (after {', '.join(f'#{r}' for r in step.requires)})" if step.requires else ""
        lines.append(
            f"  #{index:<3}{MARKS[step.change]:>3} {step.action.value:<8} {step.ref}"
            f"{after}: {step.reason}"
        )
    if show_unchanged and plan.unchanged:
        lines.append("Unchanged:")
        lines.extend(f"        = {noop.ref}: {noop.reason}" for noop in plan.unchanged)
    if plan.would_prune:
        lines.append("Would prune (apply with --prune to remove):")
        lines.extend(f"        ? {noop.ref}: {noop.reason}" for noop in plan.would_prune)
    return lines
