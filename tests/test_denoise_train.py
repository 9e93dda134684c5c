"""`vidgraph train denoise` and `vidgraph eval denoise` on real pictures, and the denoise
node (gray model on colour frames, tiles without seams)."""

import json
import math
import signal
import time
from pathlib import Path

import cv2
import pytest
import torch

from pipeline.app.cli import main
from pipeline.core.frame import Frame
from pipeline.kit.testing import run_node
from pipeline.kit.training import native_bf16
from plugins.denoise.apply import load, tiled
from plugins.denoise.evaluate import ssim
from plugins.denoise.model import FFDNet
from plugins.denoise.noise import gaussian

from .conftest import spawn_vidgraph

GRAY = ["camera", "moon", "page", "coins", "text", "astronaut", "coffee", "chelsea"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("gray")
    for name in GRAY:
        image = getattr(data, name)()
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(folder / f"{name}.png"), image)
    return folder


@pytest.fixture(scope="module")
def trained(pictures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "gray.pt"
    assert main(["train", "denoise", str(pictures), "--out", str(out), "--channels", "1",
                 "--features", "16", "--depth", "5", "--patch", "40", "--batch-size", "16",
                 "--iterations", "120", "--val-every", "40", "--holdout", "2", "--lr", "2e-3",
                 "--threads", "2", "--bf16"]) == 0
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.clamp(0, 1) - b) ** 2).mean()))


def test_short_training_run_improves_on_held_out_pictures(trained):
    _, info = load(str(trained))
    scores = [h["val_psnr_25"] for h in info["history"]]
    assert len(scores) == 3 and scores[-1] > scores[0]
    assert info["val_psnr_25"] > 21.0  # the noisy input is at 20.2 dB
    assert info["precision"] == ("bfloat16 mixed" if native_bf16() else "float32")


def test_tiles_and_whole_frame_agree_within_005_db(trained):
    from skimage import data

    net, _ = load(str(trained))
    clean = torch.from_numpy(data.camera()).float()[None, None] / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = net(noisy, 25.0)
        pieces = tiled(net, noisy, 25.0, tile=128, overlap=32)
    assert abs(psnr(whole, clean) - psnr(pieces, clean)) < 0.05


def test_gray_model_cleans_gray_frames_and_keeps_the_colour_of_colour_ones(trained):
    from skimage import data

    clean = torch.from_numpy(data.moon()).float()[None, None] / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(1)).clamp(0, 1)
    as_rgb = (noisy[0, 0, :, :, None].expand(-1, -1, 3) * 255).round().byte().contiguous()
    (out,) = run_node("denoise", [Frame.from_image(as_rgb)], model=str(trained), sigma=25)
    after = out.image.float() / 255
    assert torch.equal(out.image[..., 0], out.image[..., 2])  # gray stays gray
    assert psnr(after[..., 0], clean[0, 0]) > psnr(noisy[0, 0], clean[0, 0]) + 1.0
    colour = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    (kept,) = run_node("denoise", [Frame.from_image(colour)], model=str(trained), sigma=10)
    before, after = torch.from_numpy(colour).float(), kept.image.float()
    chroma = (after - after.mean(2, keepdim=True)) - (before - before.mean(2, keepdim=True))
    assert chroma.abs().mean() < 1.0  # grey levels: colour differences pass through


def test_split_view_keeps_the_input_left_of_a_line(trained):
    from skimage import data

    colour = cv2.resize(data.astronaut(), (160, 96), interpolation=cv2.INTER_AREA)
    noisy = gaussian(torch.from_numpy(colour).float() / 255, 20.0,
                     torch.Generator().manual_seed(2)).clamp(0, 1)
    image = (noisy * 255).round().byte()
    (out,) = run_node("denoise", [Frame.from_image(image)], model=str(trained), sigma=20,
                      split=0.25)
    assert torch.equal(out.image[:, :39], image[:, :39])  # the input, left of the line
    assert (out.image[:, 39:41] == 255).all()  # the line
    assert not torch.equal(out.image[:, 41:], image[:, 41:])  # denoised right of it


def test_a_batch_of_two_sizes_and_noise_levels_matches_frame_by_frame(trained):
    from skimage import data

    from pipeline.core.node import NodeContext
    from pipeline.core.registry import Registry

    g = torch.Generator().manual_seed(3)
    frames = []
    for k, (size, sigma) in enumerate([((96, 128), 10.0), ((64, 80), 30.0), ((96, 128), 30.0)]):
        clean = cv2.resize(data.astronaut(), size[::-1], interpolation=cv2.INTER_AREA)
        noisy = gaussian(torch.from_numpy(clean).float() / 255, sigma, g).clamp(0, 1)
        frames.append(Frame.from_image((noisy * 255).round().byte(), index=k, stream=str(k)))
    cls = Registry.from_entry_points().get("denoise")
    node = cls(cls.Params(model=str(trained), sigma="auto"),
               NodeContext("clean", torch.device("cpu")))
    node.open()
    together = node.process_batch(frames)
    alone = [run_node("denoise", [f], model=str(trained), sigma="auto")[0] for f in frames]
    for a, b in zip(together, alone, strict=True):
        assert a.stream == b.stream and a.image.shape == b.image.shape
        assert (a.image.int() - b.image.int()).abs().max() <= 1


def test_eval_prints_psnr_and_ssim_beside_non_local_means(trained, pictures, capsys):
    assert main(["eval", "denoise", "--data", str(pictures), "--sigma", "25",
                 "--model", str(trained), "--baselines", "nlm"]) == 0  # BM3D: tested apart
    table = capsys.readouterr().out
    assert "non-local means (OpenCV)" in table and "noisy input" in table
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    noisy_psnr = float(lines["noisy input"].split()[-3])
    model_psnr = float(lines[str(trained)].split()[-3])
    assert model_psnr > noisy_psnr + 1.0


def test_ssim_of_a_picture_with_itself_is_one_and_falls_with_noise():
    x = torch.rand(3, 64, 64)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1)) < 0.9


def tiny_training(pictures: Path, iterations: int, val_every: int) -> list[str]:
    """A `vidgraph train denoise` command of a few steps of a tiny network (``--threads``
    last)."""
    return ["train", "denoise", str(pictures), "--channels", "1", "--features", "8",
            "--depth", "3", "--patch", "24", "--batch-size", "4", "--iterations",
            str(iterations), "--val-every", str(val_every), "--holdout", "2", "--threads", "1"]


def test_n_steps_then_resume_then_m_steps_equal_n_plus_m_steps_bit_for_bit(pictures,
                                                                            tmp_path):
    common = tiny_training(pictures, iterations=10, val_every=3)
    whole = tmp_path / "whole.pt"
    assert main([*common, "--out", str(whole)]) == 0
    parts = tmp_path / "parts.pt"
    assert main([*common, "--out", str(parts), "--chunk", "4"]) == 0
    state = parts.with_suffix(".state.pt")
    assert torch.load(state, weights_only=False)["kept"]["step"] == 4
    assert main([*common, "--out", str(parts), "--resume", str(state), "--chunk", "3"]) == 0
    assert main([*common, "--out", str(parts), "--resume", str(state)]) == 0
    one = torch.load(whole.with_suffix(".state.pt"), weights_only=False)
    chunked = torch.load(state, weights_only=False)
    assert chunked["kept"]["step"] == one["kept"]["step"] == 10
    assert chunked["kept"]["history"] == one["kept"]["history"]  # losses and scores
    for name, tensor in one["parts"]["net"].items():
        assert torch.equal(tensor, chunked["parts"]["net"][name]), name
    commands = torch.load(parts, weights_only=False)["info"]["commands"]
    assert len(commands) == 3 and all("--resume" in c for c in commands[1:])
    assert main([*common[:-2], "--threads", "1", "--lr", "0.1", "--out", str(parts),
                 "--resume", str(state)]) == 1  # other options: refused, one line


def test_a_state_from_before_loss_and_schedule_resumes_only_with_their_old_values(
        pictures, tmp_path):
    common = tiny_training(pictures, iterations=6, val_every=3)
    out = tmp_path / "old.pt"
    assert main([*common, "--out", str(out), "--chunk", "3"]) == 0
    state = out.with_suffix(".state.pt")
    saved = torch.load(state, weights_only=False)
    for option in ("loss", "schedule"):  # as the runs begun before these options wrote it
        del saved["options"][option]
    torch.save(saved, state)
    assert main([*common, "--out", str(out), "--resume", str(state), "--loss", "l1"]) == 1
    assert main([*common, "--out", str(out), "--resume", str(state),
                 "--schedule", "step"]) == 1
    assert main([*common, "--out", str(out), "--resume", str(state)]) == 0
    assert torch.load(state, weights_only=False)["kept"]["step"] == 6


@pytest.mark.parametrize("loss", ["l1", "charbonnier", "psnr"])
def test_the_loss_chosen_trains_other_weights_and_is_recorded(pictures, tmp_path, loss):
    common = [*tiny_training(pictures, iterations=4, val_every=4), "--schedule", "constant"]
    assert main([*common, "--out", str(tmp_path / "mse.pt")]) == 0
    assert main([*common, "--out", str(tmp_path / "other.pt"), "--loss", loss]) == 0
    mse = torch.load(tmp_path / "mse.state.pt", weights_only=False)
    other = torch.load(tmp_path / "other.state.pt", weights_only=False)
    assert other["kept"]["info"]["loss"] == loss
    assert other["kept"]["info"]["schedule"] == "constant"
    assert other["kept"]["history"][0]["loss"] != mse["kept"]["history"][0]["loss"]
    assert any(not torch.equal(tensor, other["parts"]["net"][name])
               for name, tensor in mse["parts"]["net"].items())


def test_psnr_loss_is_minus_the_mean_of_the_patches_psnrs():
    from skimage import data

    from plugins.denoise.train import minus_psnr, psnr

    clean = torch.from_numpy(data.camera()[:128, :256].copy()).float().view(1, 1, 128, 256)
    clean = torch.cat([clean[..., :128], clean[..., 128:]]) / 255
    generator = torch.Generator().manual_seed(0)
    noisy = gaussian(clean, torch.tensor([5.0, 50.0]), generator).clamp(0, 1)
    each = [psnr(noisy[k], clean[k]) for k in range(2)]
    assert each[0] > each[1] + 15
    # the floor of one level in 255 takes 0.17 dB off the 34 dB patch
    assert minus_psnr(noisy, clean).item() == pytest.approx(-sum(each) / 2, abs=0.1)
    # a mean square error lets the patch with ten times the noise pull ten times harder;
    # minus PSNR pulls each by its error relative to its own, so that one a tenth as hard
    pulls = {}
    for loss in (minus_psnr, torch.nn.functional.mse_loss):
        output = noisy.clone().requires_grad_()
        loss(output, clean).backward()
        norms = output.grad.flatten(1).norm(dim=1)
        pulls[loss] = float(norms[1] / norms[0])
    assert 5 < pulls[torch.nn.functional.mse_loss] < 15
    assert pulls[minus_psnr] == pytest.approx(1 / pulls[torch.nn.functional.mse_loss], rel=0.1)
    assert minus_psnr(clean, clean).item() == pytest.approx(-20 * math.log10(255), abs=1e-3)


def test_eval_noise_is_8_bit_by_default_and_float_on_request():
    from plugins.denoise.evaluate import noisy_picture

    clean = torch.rand(1, 32, 32)
    eight = noisy_picture(clean, 50.0, 7, "8bit")
    assert torch.equal(eight * 255, (eight * 255).round())  # whole levels
    assert eight.min() >= 0 and eight.max() <= 1
    raw = noisy_picture(clean, 50.0, 7, "float")
    assert raw.min() < 0 or raw.max() > 1  # sigma 50 leaves 0..1 somewhere
    assert torch.allclose(eight, (raw * 255).round().clamp(0, 255) / 255)


def test_bm3d_baseline_denoises_the_same_8_bit_picture():
    from skimage import data

    from plugins.denoise.evaluate import bm3d_method, noisy_picture

    method = bm3d_method()
    assert method is not None, "the bm3d package (a dev dependency) is missing"
    clean = torch.from_numpy(data.camera()[128:256, 128:256].copy()).float()[None] / 255
    noisy = noisy_picture(clean, 25.0, 1, "8bit")
    assert psnr(method(noisy, 25.0), clean) > psnr(noisy, clean) + 6.0


def test_eval_on_colour_pictures_scores_cbm3d_and_a_gray_model_above_the_noisy_input(
        tmp_path, capsys):
    """CBM3D, and a gray model in opponent colour (its three planes), on colour pictures."""
    from skimage import data

    for name in ("astronaut", "coffee"):
        picture = getattr(data, name)()[100:196, 100:196]
        cv2.imwrite(str(tmp_path / f"{name}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert main(["eval", "denoise", "--data", str(tmp_path), "--channels", "3",
                 "--sigma", "25", "--model", "gray-light", "--baselines", "bm3d"]) == 0
    lines = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "BM3D" not in lines  # bm3d_rgb is CBM3D, and the table says so
    noisy = float(lines["noisy input"].split()[-3])
    assert float(lines["CBM3D"].split()[-3]) > noisy + 5
    assert float(lines["gray-light"].split()[-3]) > noisy + 5


def test_quantized_training_sees_8_bit_noisy_patches_and_records_it(pictures, tmp_path):
    from argparse import Namespace

    from plugins.denoise.train import noisy_batch

    clean = torch.rand(4, 1, 16, 16)
    args = Namespace(noise="gaussian", sigma_max=75.0, quantize=True)
    noisy, level = noisy_batch(clean, args, torch.Generator().manual_seed(0))
    assert torch.equal(noisy * 255, (noisy * 255).round())  # whole levels
    assert noisy.min() >= 0 and noisy.max() <= 1 and level.shape == (4, 1, 16, 16)
    out = tmp_path / "eight.pt"
    assert main([*tiny_training(pictures, iterations=3, val_every=3), "--out", str(out),
                 "--quantize"]) == 0
    _, info = load(str(out))
    assert info["quantize"] is True and "init" not in info


def test_init_starts_from_a_trained_network_and_its_card_keeps_that_training(pictures,
                                                                              tmp_path):
    first = tmp_path / "first.pt"
    assert main([*tiny_training(pictures, iterations=3, val_every=3), "--out", str(first)]
                ) == 0
    tuned = tmp_path / "tuned.pt"
    # a rate of zero leaves the learned parameters as the start file holds them
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(tuned),
                 "--init", str(first), "--lr", "0", "--schedule", "constant"]) == 0
    start, end = torch.load(first)["state_dict"], torch.load(tuned)["state_dict"]
    learned = [k for k in start if not k.endswith(("running_mean", "running_var", "tracked"))]
    assert learned and all(torch.equal(start[k], end[k]) for k in learned)
    _, info = load(str(tuned))
    assert info["init"]["model"] == str(first) and info["init"]["best_step"] == 3
    assert "--out" in info["init"]["commands"][0]
    # a smaller size than the start file's: refused in one line
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(tuned),
                 "--init", str(first), "--features", "4"]) == 1
    # a DnCNN goes on as one, and its fine-tuned file loads
    blind = tmp_path / "blind.pt"
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(blind),
                 "--arch", "dncnn"]) == 0
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(tuned),
                 "--arch", "dncnn", "--init", str(blind)]) == 0
    assert type(load(str(tuned))[0]).__name__ == "DnCNN"


def test_residual_ffdnet_adds_its_layers_answer_to_the_noisy_picture(pictures, tmp_path):
    from plugins.denoise.model import FFDNet

    net = FFDNet(channels=3, features=8, depth=3, residual=True).eval()
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    noisy = torch.rand(2, 3, 21, 30)  # odd sides: padded and cropped back
    with torch.no_grad():
        assert torch.equal(net(noisy, 25.0), noisy)
    out = tmp_path / "residual.pt"
    assert main([*tiny_training(pictures, iterations=3, val_every=3), "--out", str(out),
                 "--residual"]) == 0
    model, _ = load(str(out))
    assert model.residual and torch.load(out)["arch_args"]["residual"] is True
    assert main([*tiny_training(pictures, iterations=3, val_every=3), "--out", str(out),
                 "--arch", "dncnn", "--residual"]) == 1


def test_init_with_more_depth_or_features_grows_the_network_and_the_card_says_so(
        pictures, tmp_path):
    first = tmp_path / "first.pt"
    assert main([*tiny_training(pictures, iterations=3, val_every=3), "--out", str(first)]
                ) == 0
    grown = tmp_path / "grown.pt"
    # a rate of zero: the grown network's first layers are the start file's
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(grown),
                 "--init", str(first), "--depth", "6", "--lr", "0", "--schedule",
                 "constant"]) == 0
    start, end = torch.load(first)["state_dict"], torch.load(grown)["state_dict"]
    assert torch.equal(start["body.0.weight"], end["body.0.weight"])
    assert end["body.5.weight"].shape == (8, 8, 3, 3)  # a new middle block's conv
    net, info = load(str(grown))
    assert net.depth == 6 and len(net.body) == 3 * 6 - 3
    assert info["init"]["grown_from_depth"] == 3
    assert torch.load(grown)["arch_args"]["depth"] == 6
    # fewer layers than the start file's: refused in one line
    assert main([*tiny_training(pictures, iterations=2, val_every=2), "--out", str(grown),
                 "--init", str(first), "--depth", "2"]) == 1
    # more channels: widened (then deepened), and the card says so
    command = [*tiny_training(pictures, iterations=2, val_every=2), "--out", str(grown),
               "--init", str(first), "--depth", "4", "--lr", "0", "--schedule", "constant"]
    command[command.index("--features") + 1] = "12"
    assert main(command) == 0
    net, info = load(str(grown))
    assert (net.features, net.depth) == (12, 4) and net.body[0].weight.shape[0] == 12
    assert info["init"]["grown_from_features"] == 8
    assert info["init"]["grown_from_depth"] == 3
    assert torch.load(grown)["arch_args"]["features"] == 12


def test_coarse_depth_builds_or_grows_a_coarse_branch_and_the_card_says_so(pictures,
                                                                           tmp_path, capsys):
    def command(out: Path, *more: str, size: tuple[int, int] = (8, 3)) -> list[str]:
        """A tiny training of ``size`` (features, depth) written to ``out``."""
        line = [*tiny_training(pictures, iterations=2, val_every=2), "--out", str(out), *more]
        line[line.index("--features") + 1], line[line.index("--depth") + 1] = map(str, size)
        return line

    built = tmp_path / "built.pt"
    assert main(command(built, "--coarse-depth", "2", "--coarse-features", "6")) == 0
    net, _ = load(str(built))
    assert (net.coarse_features, net.coarse_depth) == (6, 2)
    grown = tmp_path / "grown.pt"
    # a rate of zero: the body is the start file's, and the new branch adds nothing yet
    assert main(command(grown, "--init", "gray-light", "--coarse-depth", "2",
                        "--coarse-features", "6", "--lr", "0", "--schedule", "constant",
                        size=(32, 8))) == 0
    start, end = load("gray-light")[0].state_dict(), torch.load(grown)["state_dict"]
    assert torch.equal(start["body.0.weight"].half(), end["body.0.weight"])
    assert end[f"body.{FFDNet(1, 32, 8).body_middle()}.up.weight"].abs().max() == 0
    net, info = load(str(grown))
    assert (net.features, net.depth, net.coarse_depth) == (32, 8, 2)
    assert info["init"]["grown_coarse"] is True
    assert torch.load(grown)["arch_args"]["coarse_depth"] == 2
    # the opponent architecture's gray network gets one too, in a colour model
    colour = command(tmp_path / "opponent.pt", "--arch", "opponent", "--coarse-depth", "2")
    colour[colour.index("--channels") + 1] = "3"
    assert main(colour) == 0
    net, _ = load(str(tmp_path / "opponent.pt"))
    assert net.channels == 3 and net.plane.coarse_depth == 2
    # a second branch, growth around one, and dncnn: refused in one line each
    capsys.readouterr()
    for refused, size, reason in (
            (["--init", str(grown), "--coarse-depth", "2"], (32, 8), "already"),
            (["--init", str(grown)], (32, 9), "wider or deeper before"),
            (["--arch", "dncnn", "--coarse-depth", "2"], (8, 3), "not dncnn's"),
            (["--coarse-depth", "-1"], (8, 3), "--coarse-depth -1")):
        assert main(command(tmp_path / "refused.pt", *refused, size=size)) == 1
        assert reason in capsys.readouterr().err
    assert not (tmp_path / "refused.pt").exists()


def test_eval_scores_a_model_averaged_over_its_views_beside_it(tmp_path, capsys):
    from skimage import data

    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("camera", "moon"):
        cv2.imwrite(str(folder / f"{name}.png"), getattr(data, name)()[:160, :200])
    rows = tmp_path / "rows.json"
    assert main(["eval", "denoise", "--data", str(folder), "--sigma", "25", "--model",
                 "gray-light", "--views", "8", "--baselines", "none", "--json", str(rows)]) == 0
    scores = {row["method"]: row["psnr"] for row in json.loads(rows.read_text())}
    assert set(scores) == {"noisy input", "gray-light", "gray-light, 8 views"}
    assert scores["gray-light, 8 views"] > scores["gray-light"] + 0.05
    capsys.readouterr()


def test_ctrl_c_stops_at_a_step_and_the_run_resumes_bit_for_bit(pictures, tmp_path):
    """A long run given Ctrl+C writes its resumable state at the next step boundary and
    exits 130; resumed for 5 steps, it holds what 5 more steps in one go would."""
    common = tiny_training(pictures, iterations=100_000, val_every=20)
    out = tmp_path / "stopped.pt"
    proc = spawn_vidgraph(*common, "--out", str(out))
    deadline = time.monotonic() + 60
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first held-out check writes the best weights
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step" in stderr
    state = out.with_suffix(".state.pt")
    steps = torch.load(state, weights_only=False)["kept"]["step"]
    assert 20 <= steps < 100_000 and f"stopped at step {steps} of 100000" in stderr
    assert main([*common, "--out", str(out), "--resume", str(state), "--chunk", "5"]) == 0
    whole = tmp_path / "whole.pt"
    assert main([*common, "--out", str(whole), "--chunk", str(steps + 5)]) == 0
    one = torch.load(whole.with_suffix(".state.pt"), weights_only=False)
    resumed = torch.load(state, weights_only=False)
    assert resumed["kept"]["step"] == one["kept"]["step"] == steps + 5
    for name, tensor in one["parts"]["net"].items():
        assert torch.equal(tensor, resumed["parts"]["net"][name]), name


def test_opponent_architecture_starts_from_a_gray_model_and_is_a_colour_model(trained,
                                                                             tmp_path):
    """`--arch opponent --init GRAY` trains the gray network on the opponent planes of
    colour patches; the file it writes is a colour model (the node and eval run it on
    RGB), and its network starts as the gray one."""
    from skimage import data

    from plugins.denoise.apply import in_colour
    from plugins.denoise.model import Opponent

    colour = tmp_path / "colour"
    colour.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        picture = getattr(data, name)()[:160, :160]
        cv2.imwrite(str(colour / f"{name}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    opponent = tmp_path / "opponent.pt"
    command = [*tiny_training(colour, iterations=2, val_every=2), "--out", str(opponent),
               "--arch", "opponent", "--init", str(trained)]
    for option, value in (("--channels", "3"), ("--features", "16"), ("--depth", "5")):
        command[command.index(option) + 1] = value
    # a rate of zero leaves the gray network's learned parameters as the start file has them
    assert main([*command, "--lr", "0", "--schedule", "constant"]) == 0
    start, end = torch.load(trained)["state_dict"], torch.load(opponent)["state_dict"]
    learned = [k for k in start if not k.endswith(("running_mean", "running_var", "tracked"))]
    assert learned and all(torch.equal(start[k], end[f"plane.{k}"]) for k in learned)
    net, info = load(str(opponent))
    assert isinstance(net, Opponent) and net.channels == 3 and in_colour(net) is net
    assert torch.load(opponent)["arch_args"] == {"channels": 3, "features": 16, "depth": 5,
                                                 "residual": False}
    assert info["init"]["model"] == str(trained)
    # on colour frames the node runs it as a colour model, and it cleans them
    target = torch.from_numpy(data.coffee()[:160, :160]).float() / 255
    noisy = gaussian(target, 25.0, torch.Generator().manual_seed(0)).clamp(0, 1)
    noisy = (noisy * 255).round().to(torch.uint8)
    (out,) = run_node("denoise", [Frame.from_image(noisy)], model=str(opponent), sigma=25)
    assert psnr(out.image.float() / 255, target) > psnr(noisy.float() / 255, target) + 1
    # it learns: a rate above zero moves the gray network's weights
    assert main([*command, "--lr", "1e-3"]) == 0
    moved = torch.load(opponent)["state_dict"]
    assert not torch.equal(start["body.0.weight"], moved["plane.body.0.weight"])
    # an opponent file starts an opponent run too, from its gray network
    again = tmp_path / "again.pt"
    from_opponent = [*command[:command.index("--out")], "--out", str(again),
                     "--arch", "opponent", "--init", str(opponent)]
    assert main([*from_opponent, "--lr", "0", "--schedule", "constant"]) == 0
    kept = torch.load(again)["state_dict"]
    assert all(torch.equal(moved[f"plane.{k}"], kept[f"plane.{k}"]) for k in learned)
    # its gray network grows as an ffdnet's does, measured on the colour patches' mean
    command[command.index("--depth") + 1] = "7"
    assert main(command) == 0
    net, info = load(str(opponent))
    assert net.plane.depth == 7 and info["init"]["grown_from_depth"] == 5
    # a gray --channels with it is refused in one line
    assert main([*tiny_training(colour, iterations=2, val_every=2), "--out", str(opponent),
                 "--arch", "opponent"]) == 1
