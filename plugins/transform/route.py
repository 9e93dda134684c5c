"""``route``: send each frame to one of several outputs by what was recognised on it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.core.frame import Frame
from pipeline.core.node import Emit, Params, Port, Stage

DEFAULT = "default"


class Rule(BaseModel):
    """When a frame goes to a route: its label is one of ``label`` (any label when not
    given) with a score of at least ``min_score``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | list[str] | None = Field(None, description="label or labels that match")
    min_score: float = Field(0.0, ge=0, le=1, description="lowest label score that matches")

    def matches(self, label: object, score: object) -> bool:
        """Whether a label with this score satisfies the rule."""
        if label is None:
            return False
        wanted = [self.label] if isinstance(self.label, str) else self.label
        if wanted is not None and str(label) not in wanted:
            return False
        return float(score if score is not None else 1.0) >= self.min_score


class RouteParams(Params):
    """Parameters of ``route``."""

    routes: dict[str, Rule] = Field(description="output name -> rule; the first rule that "
                                    "matches wins, frames matching none go to 'default'")
    on: Literal["frame", "detections"] = Field(
        "frame", description="match the frame's label, or the label of any detection")

    @field_validator("routes")
    @classmethod
    def _names(cls, routes: dict[str, Rule]) -> dict[str, Rule]:
        if not routes:
            raise ValueError("needs at least one route")
        for name in routes:
            if not name.isidentifier() or name == DEFAULT:
                raise ValueError(f"route name '{name}' must be a plain word other than "
                                 f"'{DEFAULT}'")
        return routes


class Route(Stage):
    """Sends each frame to the output of the first rule it matches, else to ``default``,
    so a graph treats frames differently by what a classifier (``classify``) recognised.
    Each route is an output port of the same name; an output nobody reads drops its
    frames.

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 96, height: 96, duration: 0.2}
      mood: {plugin: classify, input: src, model: expression}
      split: {plugin: route, input: mood, routes: {smiling: {label: Happy, min_score: 0.5}}}
      happy: {plugin: null_sink, input: split.smiling}
      rest: {plugin: null_sink, input: split.default}
    ```
    """

    name = "route"
    summary = "send frames to one of several outputs by label and score"
    Params = RouteParams
    params: RouteParams
    any_device = True
    outputs = (Port(DEFAULT, optional=True, doc="frames that match no route"),)

    @classmethod
    def output_ports(cls, params: Params) -> tuple[Port, ...]:
        assert isinstance(params, RouteParams)
        return (*cls.outputs, *(Port(name, optional=True, doc="frames that match its rule")
                                for name in params.routes))

    def process(self, frame: Frame) -> Emit:
        for name, rule in self.params.routes.items():
            if self._matches(rule, frame):
                return Emit(name, frame)
        return Emit(DEFAULT, frame)

    def _matches(self, rule: Rule, frame: Frame) -> bool:
        if self.params.on == "frame":
            return rule.matches(frame.meta.get("label"), frame.meta.get("label_score"))
        dets = frame.detections
        if dets is None or dets.labels is None:
            return False
        scores = (dets.label_scores.tolist() if dets.label_scores is not None
                  else [None] * len(dets))
        return any(rule.matches(label, score)
                   for label, score in zip(dets.labels, scores, strict=True))
