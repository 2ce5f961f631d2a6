"""``graft rl``: a short CartPole run end to end, killed and resumed, evaluated, played."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from graft.cli.main import app


def test_run_folder_and_cli_summary(runs):
    run = runs["whole"]
    for name in ("config.json", "metrics.json", "history.json", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "module" / "manifest.json").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "checkpoint").exists()  # finished: nothing left to resume
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3000 and metrics["eval_episodes"] == 5
    assert metrics["mean_return"] == pytest.approx(np.mean(metrics["returns"]))
    assert "CartPole-v1: mean return" in runs["stdout"] and "Saved:" in runs["stdout"]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["hidden"] == [32, 32] and config["batch_size"] == 64  # the Zoo's, kept
    html = (run / "report.html").read_text()
    assert 'id="returns-plot"' in html and 'id="training-plot"' in html
    assert html.count("data:image/png;base64,") == 2
    history = json.loads((run / "history.json").read_text())
    assert (
        len(html.split('id="evaluations"')[1].split("</table>")[0].split("<tr")) - 2
        == len(history["evaluations"]) + 1
    )  # one row per periodic evaluation, plus the final one
    assert [e[0] for e in history["evaluations"]] == [1000, 2000, 3000]


def test_killed_and_resumed_run_ends_where_the_uninterrupted_one_does(runs):
    a = json.loads((runs["whole"] / "history.json").read_text())
    b = json.loads((runs["resumed"] / "history.json").read_text())
    assert len(a["episodes"]) > 10
    assert a["episodes"] == b["episodes"]  # every episode's end step, return and length
    assert a["evaluations"] == b["evaluations"]
    np.testing.assert_allclose(np.array(a["losses"]), np.array(b["losses"]), rtol=1e-5)
    ma = json.loads((runs["whole"] / "metrics.json").read_text())
    mb = json.loads((runs["resumed"] / "metrics.json").read_text())
    assert ma["returns"] == mb["returns"] and ma["kept_step"] == mb["kept_step"]
    from graft.module.io import load

    wa, wb = load(runs["whole"] / "module").model, load(runs["resumed"] / "module").model
    for x, y in zip(wa.get_weights(), wb.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_resume_without_a_checkpoint_says_so(runs, tmp_path):
    result = CliRunner().invoke(
        app, ["rl", "train", "CartPole-v1", "--out", str(runs["whole"]), "--resume"]
    )
    assert result.exit_code == 1
    assert "has no checkpoint to resume from (it has finished" in result.output
    again = CliRunner().invoke(app, ["rl", "train", "CartPole-v1", "--out", str(runs["whole"])])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_evaluate_json_and_policy_module(runs):
    result = CliRunner().invoke(
        app, ["rl", "evaluate", str(runs["whole"]), "--episodes", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["env_id"] == "CartPole-v1" and data["episodes"] == 5
    assert data["mean_return"] == pytest.approx(np.mean(data["returns"]))
    assert data["std_return"] == pytest.approx(np.std(data["returns"]))
    # the same seeds as the run's final evaluation: the module reproduces it
    metrics = json.loads((runs["whole"] / "metrics.json").read_text())
    assert data["returns"] == metrics["returns"]
    manifest = json.loads((runs["whole"] / "module" / "manifest.json").read_text())
    assert manifest["task"] == "rl-policy"
    assert manifest["inputs"] == {
        "kind": "observation", "encoded": False, "normalization": "", "shape": [4],
        "environment": "CartPole-v1",
    }  # fmt: skip
    assert manifest["labels"] == ["push left", "push right"]


def test_play_writes_an_animated_gif(runs, tmp_path):
    gif = tmp_path / "cartpole.gif"
    result = CliRunner().invoke(
        app, ["rl", "play", str(runs["whole"]), "--gif", str(gif), "--max-steps", "20"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(gif) as image:
        assert image.size == (300, 200) and image.n_frames > 1
        durations = []
        for i in range(image.n_frames):  # Pillow merges identical frames, adding durations
            image.seek(i)
            durations.append(image.info["duration"])
    import re

    steps, frames = map(int, re.search(r"in (\d+) steps; (\d+) frames", result.output).groups())
    assert 1 <= steps <= 20 and frames == steps + 1  # the first frame, then one per step
    assert sum(durations) == frames * 30  # 30 fps: 33 ms, stored in GIF's 10 ms units
    assert [p.name for p in tmp_path.iterdir()] == ["cartpole.gif"]
    bad = CliRunner().invoke(
        app, ["rl", "play", str(runs["whole"]), "--gif", str(tmp_path / "a.png")]
    )
    assert bad.exit_code == 1 and "The output is a .gif file" in bad.output


def test_bad_environments_get_clear_errors(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["rl", "train", "CartPol-v1", "--out", str(out)])
    assert result.exit_code == 1
    assert "Gymnasium has no environment 'CartPol-v1'. Did you mean CartPole-v1" in result.output
    assert "Received: env_id='CartPol-v1'" in result.output.replace("\n", "")
    result = CliRunner().invoke(app, ["rl", "train", "MountainCarContinuous-v0", "--out", str(out)])
    assert result.exit_code == 1 and "needs a discrete action space" in result.output
    assert not out.exists()  # nothing written
    result = CliRunner().invoke(
        app, ["rl", "train", "CartPole-v1", "--out", str(out), "--tau", "0"]
    )
    assert result.exit_code == 1 and "Received: --tau=0.0" in result.output.replace("\n", "")


def test_evaluate_refuses_a_classifier(tiny_module):
    result = CliRunner().invoke(app, ["rl", "evaluate", str(tiny_module)])
    assert result.exit_code == 1 and "not a policy" in result.output


def test_graft_runs_lists_rl_runs(runs, tmp_path):
    import shutil

    from graft.runs import find_runs, read_run

    root = tmp_path / "runs"
    shutil.copytree(runs["whole"], root / "cartpole")
    (root / "partial").mkdir()
    shutil.copy(runs["whole"] / "config.json", root / "partial" / "config.json")
    (root / "partial" / "checkpoint").mkdir()
    (root / "partial" / "checkpoint" / "state.json").write_text(
        json.dumps({"step": 1500, "seconds": 3.5})
    )
    by_name = {r.name: r for r in find_runs(root)}
    done, partial = by_name["cartpole"], by_name["partial"]
    metrics = json.loads((runs["whole"] / "metrics.json").read_text())
    assert (done.kind, done.status, done.data) == ("rl", "finished", "CartPole-v1")
    assert done.mean_return == metrics["mean_return"] and done.accuracy is None
    assert done.result == f"return {metrics['mean_return']:.1f}"
    assert (partial.status, partial.progress) == ("resumable", "step 1,500 of 3,000")
    result = CliRunner().invoke(app, ["runs", "ls", str(root)])
    assert result.exit_code == 0 and f"return {metrics['mean_return']:.1f}" in result.output
    shown = CliRunner().invoke(app, ["runs", "show", str(root / "cartpole")])
    assert "mean_return" in shown.output and "learning_rate" in shown.output
    assert read_run(root / "cartpole").metrics["steps"] == 3000


def test_report_renders_in_a_browser(runs, tmp_path):
    from tests.browser import chromium, dump_dom, screenshot

    browser = chromium()
    html = runs["whole"] / "report.html"
    dom = dump_dom(browser, html, tmp_path)
    metrics = json.loads((runs["whole"] / "metrics.json").read_text())
    assert f'id="mean-return">{metrics["mean_return"]:.1f}<' in dom
    assert dom.count('src="data:image/png;base64,') == 2
    assert "Kept the policy of step" in dom and "CartPole-v1" in dom
    shot = screenshot(browser, html, tmp_path / "report.png")
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # a rendered page, not a blank one


def test_several_environments_step_together(tmp_path):
    import graft.rl

    run = graft.rl.train(
        "Acrobot-v1", out=tmp_path / "acrobot", steps=600, n_envs=3, hidden=(16,),
        learning_starts=100, train_freq=12, eval_every=300, eval_episodes=1,
        final_eval_episodes=1, checkpoint_every=300,
    )  # fmt: skip
    history = json.loads((tmp_path / "acrobot" / "history.json").read_text())
    assert run.metrics["steps"] == 600 and run.config.n_envs == 3
    assert [e[0] for e in history["evaluations"]] == [300, 600]
    assert len(history["losses"]) == 600 // 12 - 100 // 12  # one per 12 transitions past 100
    assert -500.0 <= run.metrics["mean_return"] <= 0.0
