"""`vidgraph train classify` on real pictures: a short run learns, checkpoints round-trip,
the classify node reads them; and the shipped expression model on FER2013 when present."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.app.cli import main
from pipeline.core.errors import VidgraphError
from pipeline.core.frame import Frame
from pipeline.kit.testing import run_node
from plugins.senet import checkpoint
from plugins.senet.data import read
from plugins.senet.train import predict

ROOT = Path(__file__).resolve().parent.parent
FER = ROOT.parent / "shared/datasets/fer2013/fer2013.npz"


def stripes(rng: np.random.Generator, vertical: bool, size: int = 32) -> np.ndarray:
    """Noisy RGB stripes at a random period, phase and colour: the class is the direction."""
    period = int(rng.integers(4, 10))
    ramp = ((np.arange(size) + rng.integers(0, period)) // (period // 2)) % 2
    plane = np.broadcast_to(ramp[None, :] if vertical else ramp[:, None], (size, size))
    colour = rng.integers(60, 255, 3)
    image = plane[:, :, None] * colour + rng.normal(0, 25, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stripes_npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1], 150)
    images = np.stack([stripes(rng, bool(v)) for v in labels])
    split = np.array(["train"] * 200 + ["val"] * 50 + ["test"] * 50)
    path = tmp_path_factory.mktemp("stripes") / "stripes.npz"
    np.savez(path, images=images, labels=labels, split=split,
             class_names=np.array(["across", "down"]))
    return path


@pytest.fixture(scope="module")
def trained(stripes_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "stripes.pt"
    assert main(["train", "classify", str(stripes_npz), "--out", str(out), "--epochs", "4",
                 "--widths", "8", "16", "32", "64", "--batch-size", "25", "--crop", "28",
                 "--rotate", "5", "--seed", "3", "--threads", "2"]) == 0
    return out


def test_short_training_run_learns_held_out_pictures(trained):
    model = checkpoint.load(str(trained))
    assert model.info["choose_accuracy"] >= 0.95
    assert model.info["test_accuracy"] >= 0.95
    assert len(model.info["history"]) == 4
    losses = [h["loss"] for h in model.info["history"]]
    assert losses[-1] < losses[0]
    assert trained.with_suffix(".confusion.png").is_file()
    png = cv2.imread(str(trained.with_suffix(".confusion.png")))
    assert png is not None and png.shape[0] > 100


def test_checkpoint_round_trips_with_class_names_and_preprocessing(trained, stripes_npz,
                                                                    tmp_path):
    model = checkpoint.load(str(trained))
    assert model.classes == ["across", "down"]
    assert model.preprocess["size"] == 32 and model.preprocess["gray"] is False
    assert model.arch == "se_resnet_compact" and model.arch_args["widths"] == [8, 16, 32, 64]
    again = tmp_path / "again.pt"
    model.save(again)
    twin = checkpoint.load(str(again))
    data = read(stripes_npz)
    test = data.subset(data.split == "test")
    assert torch.equal(predict(model, test.images, torch.device("cpu")),
                       predict(twin, test.images, torch.device("cpu")))
    assert twin.classes == model.classes and twin.preprocess == model.preprocess


def test_training_is_deterministic_with_a_seed(trained, stripes_npz, tmp_path):
    out = tmp_path / "again.pt"
    assert main(["train", "classify", str(stripes_npz), "--out", str(out), "--epochs", "4",
                 "--widths", "8", "16", "32", "64", "--batch-size", "25", "--crop", "28",
                 "--rotate", "5", "--seed", "3", "--threads", "2"]) == 0
    first, second = torch.load(trained, weights_only=True), torch.load(out, weights_only=True)
    assert first["info"]["history"] == second["info"]["history"]


def test_test_time_views_average_whole_corner_centre_and_mirrored_pictures(trained,
                                                                          stripes_npz):
    model = checkpoint.load(str(trained))
    assert model.preprocess["views"] == {"flip": True, "crop": 28}
    images = read(stripes_npz).images[:5]
    x = model.prepare(images)
    with torch.inference_mode():
        views = [x, *(x[..., t:t + 28, s:s + 28] for t, s in
                      ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2)))]
        views += [v.flip(-1) for v in views]
        expected = torch.stack([model.net(v).softmax(1) for v in views]).mean(0)
        assert torch.allclose(model.probabilities(x, chunk=3), expected, atol=1e-6)
        assert torch.allclose(model.probabilities(x, views=False), model.net(x).softmax(1),
                              atol=1e-6)


def test_eval_classify_scores_a_split_and_names_a_missing_one(trained, stripes_npz,
                                                              tmp_path, capsys):
    report = tmp_path / "scores.json"
    assert main(["eval", "classify", str(stripes_npz), "--model", str(trained),
                 "--split", "test", "--json", str(report), "--png",
                 str(tmp_path / "m.png")]) == 0
    printed = capsys.readouterr().out
    scores = json.loads(report.read_text())
    assert sum(map(sum, scores["confusion"])) == 50 and scores["views"] is True
    assert scores["accuracy"] >= 0.95 and f"accuracy {scores['accuracy']:.4f}" in printed
    assert cv2.imread(str(tmp_path / "m.png")) is not None
    assert main(["eval", "classify", str(stripes_npz), "--model", str(trained),
                 "--split", "PublicTest"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--split PublicTest" in err and "test, train, val" in err


def test_ensemble_averages_its_members_and_saves_as_one_checkpoint(trained, stripes_npz,
                                                                   tmp_path, capsys):
    other = tmp_path / "other.pt"
    assert main(["train", "classify", str(stripes_npz), "--out", str(other), "--epochs", "2",
                 "--widths", "8", "16", "16", "32", "--batch-size", "25", "--crop", "28",
                 "--seed", "4", "--threads", "2"]) == 0
    first, second = checkpoint.load(str(trained)), checkpoint.load(str(other))
    both = checkpoint.combine([first, second])
    x = first.prepare(read(stripes_npz).images[:6])
    with torch.inference_mode():
        expected = (first.probabilities(x) + second.probabilities(x)) / 2
        torch.testing.assert_close(both.probabilities(x), expected, atol=1e-6, rtol=0)
    saved = tmp_path / "both.pt"
    assert main(["eval", "classify", str(stripes_npz), "--model", str(trained), "--model",
                 str(other), "--split", "test", "--save", str(saved)]) == 0
    assert f"{trained} + {other} on test" in capsys.readouterr().out
    again = checkpoint.load(str(saved))
    assert again.arch == "ensemble" and again.classes == ["across", "down"]
    assert again.info["accuracy"] >= 0.95 and len(again.info["members"]) == 2
    with torch.inference_mode():
        torch.testing.assert_close(again.probabilities(x), expected, atol=2e-3, rtol=0)
    second.classes = ["down", "across"]
    with pytest.raises(VidgraphError, match="differ in classes"):
        checkpoint.combine([first, second])


def test_classify_node_labels_whole_frames(trained):
    rng = np.random.default_rng(7)
    truth = [0, 1, 1, 0, 1, 0]
    # frames twice the model's side: the node scales them down
    frames = [Frame.from_image(cv2.resize(stripes(rng, bool(v)), (64, 64),
                                          interpolation=cv2.INTER_NEAREST), index=i)
              for i, v in enumerate(truth)]
    out = run_node("classify", frames, model=str(trained), topk=2)
    assert [f.meta["label"] for f in out] == [["across", "down"][v] for v in truth]
    for f in out:
        assert set(f.meta["scores"]) == {"across", "down"}
        assert f.meta["label_score"] == max(f.meta["scores"].values()) > 0.5


def test_folder_tree_is_read_with_class_names_from_folders(tmp_path):
    rng = np.random.default_rng(2)
    for name, vertical in (("b_down", True), ("a_across", False)):
        (tmp_path / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), stripes(rng, vertical, 40))
    (tmp_path / "notes.txt").write_text("not a class")
    data = read(tmp_path, size=32)
    assert data.classes == ["a_across", "b_down"]
    assert data.images.shape == (6, 32, 32, 3) and data.labels.tolist() == [0] * 3 + [1] * 3
    assert data.split is None


def test_bad_data_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "missing.npz"
    assert main(["train", "classify", str(bad), "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err


def test_classify_model_file_missing_is_named():
    with pytest.raises(VidgraphError, match=r"nope\.pt"):
        checkpoint.load("nope.pt")


@pytest.mark.skipif(not FER.exists(), reason="FER2013 is not in ../shared/datasets")
def test_shipped_expression_model_on_private_test_faces():
    model = checkpoint.load("expression")
    with np.load(FER) as data:
        private = np.flatnonzero(data["usage"] == 2)[:600]
        images = torch.from_numpy(data["images"][private][:, :, :, None])
        labels = torch.from_numpy(data["labels"][private])
    accuracy = float((predict(model, images, torch.device("cpu")) == labels).float().mean())
    assert model.classes == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    assert model.info["split"] == "PrivateTest" and model.info["accuracy"] >= 0.70
    assert accuracy >= model.info["accuracy"] - 0.05, json.dumps(model.info["accuracy"])


def test_n_steps_then_resume_then_m_steps_equal_n_plus_m_steps_bit_for_bit(stripes_npz,
                                                                            tmp_path):
    # 200 training pictures in batches of 50: 4 steps an epoch, 2 epochs; the chunks stop
    # inside the first epoch, at its end, and inside the second
    common = ["train", "classify", str(stripes_npz), "--epochs", "2", "--widths", "4", "8",
              "8", "8", "--batch-size", "50", "--crop", "28", "--seed", "3", "--threads", "1"]
    whole, parts = tmp_path / "whole.pt", tmp_path / "parts.pt"
    assert main([*common, "--out", str(whole)]) == 0
    state = parts.with_suffix(".state.pt")
    assert main([*common, "--out", str(parts), "--chunk", "3"]) == 0
    for chunk in ("1", "3"):
        assert main([*common, "--out", str(parts), "--resume", str(state), "--chunk", chunk]) == 0
    assert main([*common, "--out", str(parts), "--resume", str(state)]) == 0
    one = torch.load(whole.with_suffix(".state.pt"), weights_only=False)
    chunked = torch.load(state, weights_only=False)
    assert chunked["kept"]["history"] == one["kept"]["history"]  # losses and accuracies
    for name, tensor in one["parts"]["net"].items():
        assert torch.equal(tensor, chunked["parts"]["net"][name]), name
    model = checkpoint.load(str(parts))
    assert len(model.info["commands"]) == 4 and model.info["test_accuracy"] == \
        checkpoint.load(str(whole)).info["test_accuracy"]
