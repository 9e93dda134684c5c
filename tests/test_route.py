"""`route`: frames go to the output of the first matching rule, else to 'default'; and the
expression graph end to end (detect, crop, classify, route) on a real face."""

import json

import pytest
import torch

from pipeline.core import config
from pipeline.core.errors import GraphError
from pipeline.core.executor import RunStatus
from pipeline.core.frame import Detections, Frame
from pipeline.core.graph import build_graph
from pipeline.core.node import Emit, NodeContext
from pipeline.core.registry import Registry
from pipeline.kit.testing import run_graph
from plugins.transform.route import Route, RouteParams


def frame(label: str | None = None, score: float | None = None, index: int = 0) -> Frame:
    meta = {} if label is None else {"label": label, "label_score": score}
    return Frame.from_image(torch.zeros((8, 8, 3), dtype=torch.uint8), index=index, meta=meta)


def route(**params) -> Route:
    return Route(RouteParams.model_validate(params), NodeContext(name="split",
                                                                 device=torch.device("cpu")))


def test_frames_go_to_the_first_matching_rule_else_default():
    node = route(routes={"sure_happy": {"label": "Happy", "min_score": 0.8},
                         "happy_or_surprised": {"label": ["Happy", "Surprise"]},
                         "anything": {"min_score": 0.95}})
    cases = [(frame("Happy", 0.9), "sure_happy"), (frame("Happy", 0.6), "happy_or_surprised"),
             (frame("Surprise", 0.3), "happy_or_surprised"), (frame("Sad", 0.97), "anything"),
             (frame("Sad", 0.5), "default"), (frame(), "default")]
    for item, port in cases:
        out = node.process(item)
        assert isinstance(out, Emit) and out.port == port and out.item is item


def test_routing_on_detections_matches_any_labelled_face():
    node = route(on="detections", routes={"smile": {"label": "Happy", "min_score": 0.5}})
    boxes = torch.tensor([[0.0, 0, 4, 4], [2, 2, 6, 6]])
    dets = Detections(boxes, torch.ones(2), labels=("Sad", "Happy"),
                      label_scores=torch.tensor([0.9, 0.7]))
    assert node.process(frame().with_meta(detections=dets)).port == "smile"
    low = Detections(boxes, torch.ones(2), labels=("Sad", "Happy"),
                     label_scores=torch.tensor([0.9, 0.4]))
    assert node.process(frame().with_meta(detections=low)).port == "default"
    assert node.process(frame()).port == "default"


def _graph(text: str):
    return build_graph(config.loads(text, "<test>", []), Registry.from_entry_points())


def test_route_outputs_are_named_by_the_rules_and_checked_in_the_graph():
    text = """
nodes:
  src: {plugin: testsrc, width: 32, height: 32, duration: 0.1}
  split: {plugin: route, input: src, routes: {happy: {label: Happy}}}
  a: {plugin: null_sink, input: split.happy}
  b: {plugin: null_sink, input: split.hapy}
"""
    with pytest.raises(GraphError, match=r"'split' has no output 'hapy' \(did you mean "
                                         r"'split.happy'\?\)"):
        _graph(text)
    with pytest.raises(GraphError, match="route name 'default'"):
        _graph(text.replace("{happy: {label: Happy}}", "{default: {label: Happy}}"))


def test_expression_graph_labels_the_face_and_routes_its_frames(tmp_path):
    faces, rest = tmp_path / "faces.jsonl", tmp_path / "rest.jsonl"
    result = run_graph(f"""
nodes:
  person: {{plugin: testsrc, pattern: person, width: 320, height: 240, duration: 0.4}}
  faces: {{plugin: mtcnn, input: person}}
  chips: {{plugin: face_crops, input: faces, size: 48, gray: true,
              template: fer2013}}
  mood: {{plugin: classify, input: chips, model: expression, on: detections, topk: 3}}
  split: {{plugin: route, input: mood, on: detections, routes: {{face: {{min_score: 0.0}}}}}}
  with_face: {{plugin: jsonl_sink, input: split.face, path: {faces}}}
  without: {{plugin: jsonl_sink, input: split.default, path: {rest}}}
""")
    assert result.status is RunStatus.OK, result.error
    records = [json.loads(line) for line in faces.read_text().splitlines()]
    assert len(records) == 12 and rest.read_text() == ""  # 0.4 s at 30 fps
    classes = {"Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"}
    for record in records:
        (face,) = record["detections"]
        assert face["label"] in classes and 0 < face["label_score"] <= 1
        assert len(face["topk"]) == 3 and set(face["topk"]) <= classes
        assert max(face["topk"].values()) == pytest.approx(face["label_score"], abs=1e-4)
