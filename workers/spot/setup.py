"""``dt-connector setup spot``: make Spot AI ready for what the mapping forwards.

1. The integration: ``SPOT_INTEGRATION_ID`` when set (it must exist), else the one recorded by an
   earlier run, else the integration named ``--name``, else a new custom integration.
2. One integration event type per DT event type the mapping forwards to Spot, with the schema,
   defaults and device template ``workers.spot.schema.event_type_body`` generates. An existing type
   is found by the mapping's id, the recorded id, or its name, and updated only where it differs.
3. The ids are recorded in Redis (``workers.spot.ids``), where the workers read them.

``plan_event_types`` is pure; ``SpotSetup`` does the calls. A second run finds everything as
planned and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import Redis

from workers.spot import ids as spot_ids
from workers.spot.api import SpotApi
from workers.spot.schema import differences, event_type_body, event_type_name, forwarded_to_spot
from workers.translate.mapping import EventMapping

DEFAULT_INTEGRATION_NAME = "Disruptive Technologies"

Action = Literal["create", "update", "unchanged", "missing"]


@dataclass(frozen=True)
class TypeStep:
    """What happens to one DT event type's Spot event type."""

    event_type: str
    action: Action
    type_id: int
    """The existing id (0 when it is to be created)."""
    body: dict[str, Any]
    changed: tuple[str, ...] = ()
    source: str = ""
    """Where the id came from: ``mapping``, ``recorded``, ``name`` (empty: new)."""

    def describe(self) -> str:
        name = self.body["name"]
        if self.action == "create":
            return f"create event type {name!r}"
        if self.action == "update":
            return f"update event type {self.type_id} {name!r} ({', '.join(self.changed)})"
        if self.action == "missing":
            return f"event type {self.type_id} (the mapping's events.{self.event_type}.spot.event_type_id) is missing"
        return f"event type {self.type_id} {name!r} is up to date"


@dataclass
class SpotPlan:
    integration_id: int
    integration_action: Literal["configured", "recorded", "found", "create"]
    integration_name: str
    steps: list[TypeStep] = field(default_factory=list)
    record_integration: bool = False
    recorded_before: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[TypeStep]:
        return [step for step in self.steps if step.action == "missing"]

    @property
    def changes(self) -> bool:
        """Whether running the plan would change anything in Spot or in what is recorded."""
        if self.integration_action == "create" or any(s.action in ("create", "update") for s in self.steps):
            return True
        return self.recorded_before != self.type_ids() or (
            self.record_integration and self.integration_action != "recorded"
        )

    def type_ids(self) -> dict[str, int]:
        return {step.event_type: step.type_id for step in self.steps if step.type_id and step.action != "missing"}


def plan_event_types(
    mapping: EventMapping,
    *,
    label_keys: Sequence[str],
    existing: list[dict[str, Any]],
    recorded: dict[str, int],
) -> list[TypeStep]:
    """What to do for each event type the mapping forwards to Spot, given the integration's
    ``existing`` event types and the ids ``recorded`` earlier. Pure."""
    by_id = {int(t["id"]): t for t in existing if "id" in t}
    by_name = {str(t.get("name")): t for t in existing}
    steps = []
    for event_type in forwarded_to_spot(mapping):
        rule = mapping.spot[event_type]
        body = event_type_body(event_type, rule, mapping, label_keys)
        if rule.event_type_id:
            current, source = by_id.get(rule.event_type_id), "mapping"
            if current is None:
                steps.append(TypeStep(event_type, "missing", rule.event_type_id, body, source=source))
                continue
        elif recorded.get(event_type) in by_id:
            current, source = by_id[recorded[event_type]], "recorded"
        else:
            current, source = by_name.get(event_type_name(event_type)), "name"
        if current is None:
            steps.append(TypeStep(event_type, "create", 0, body))
            continue
        changed = tuple(differences(current, body))
        action: Action = "update" if changed else "unchanged"
        steps.append(TypeStep(event_type, action, int(current["id"]), body, changed, source))
    return steps


class SpotSetup:
    """Plans and applies ``setup spot`` against one Spot AI account."""

    def __init__(self, api: SpotApi, redis: Redis, mapping: EventMapping, *, configured_integration: int) -> None:
        self._api = api
        self._redis = redis
        self._mapping = mapping
        self._configured = configured_integration

    def plan(self, *, label_keys: Sequence[str], integration_name: str = DEFAULT_INTEGRATION_NAME) -> SpotPlan:
        """Read Spot and Redis; change nothing.

        Raises:
            ApiError: Spot refused or could not be reached.
            SetupError: ``SPOT_INTEGRATION_ID`` names an integration Spot does not have.
        """
        plan = self._integration(integration_name)
        existing = self._api.event_types(plan.integration_id) if plan.integration_id else []
        plan.recorded_before = (
            spot_ids.recorded_event_types(self._redis, plan.integration_id) if plan.integration_id else {}
        )
        plan.steps = plan_event_types(
            self._mapping, label_keys=label_keys, existing=existing, recorded=plan.recorded_before
        )
        return plan

    def apply(self, plan: SpotPlan) -> SpotPlan:
        """Carry ``plan`` out; the plan as done (new ids filled in)."""
        if plan.integration_action == "create":
            plan.integration_id = int(self._api.create_integration(plan.integration_name)["id"])
        done = []
        for step in plan.steps:
            if step.action == "create":
                created = self._api.create_event_type(plan.integration_id, step.body)
                step = TypeStep(step.event_type, "create", int(created["id"]), step.body)
            elif step.action == "update":
                self._api.update_event_type(plan.integration_id, step.type_id, step.body)
            done.append(step)
        plan.steps = done
        spot_ids.record(self._redis, plan.integration_id, plan.type_ids(), integration=plan.record_integration)
        return plan

    def _integration(self, name: str) -> SpotPlan:
        if self._configured:
            found = self._api.integration(self._configured)
            if found is None:
                raise SetupError(
                    f"SPOT_INTEGRATION_ID={self._configured}: Spot AI has no such integration for this API key; "
                    "unset it to have one found or created"
                )
            return SpotPlan(self._configured, "configured", str(found.get("name", "")))
        recorded = spot_ids.recorded_integration(self._redis)
        if recorded:
            found = self._api.integration(recorded)
            if found is not None:
                return SpotPlan(recorded, "recorded", str(found.get("name", "")), record_integration=True)
        for integration in self._api.integrations():
            if integration.get("name") == name:
                return SpotPlan(int(integration["id"]), "found", name, record_integration=True)
        return SpotPlan(0, "create", name, record_integration=True)


class SetupError(Exception):
    """Setup cannot go on; the message says what to change."""
