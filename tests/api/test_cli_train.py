"""``shardtrain train``: the in-process reference run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from api.cli import app
from core.spec import TrainSpec
from core.training import Trainer
from tests.utils.data import blobs

runner = CliRunner()
SPEC = {"name": "blobs", "dataset": "ignored-here", "tags": {"team": "x"},
        "model": {"hidden": [8], "activation": "tanh"}, "optimizer": {"name": "adam", "lr": 0.01},
        "epochs": 4, "batch_size": 16, "shards": 3, "seed": 5}


def _files(tmp_path: Path, spec: dict) -> tuple[Path, Path]:
    X, y = blobs(n=150, seed=2)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json", tmp_path / "data.npz"


def test_train_prints_a_summary_and_writes_the_reference_weights(tmp_path: Path) -> None:
    spec_file, data = _files(tmp_path, SPEC)
    out = tmp_path / "w.npz"
    result = runner.invoke(app, ["train", str(spec_file), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 * 8 and summary["epochs"] == 4
    assert 0 <= summary["final_val_accuracy"] <= 1 and summary["seconds"] > 0

    X, y = blobs(n=150, seed=2)
    numeric = {k: v for k, v in SPEC.items() if k not in ("name", "dataset", "tags")}
    trainer = Trainer(TrainSpec.from_dict(numeric), X, y)
    trainer.run()
    with np.load(out) as npz:
        for name, expected in trainer.weights().items():
            assert np.array_equal(npz[name], expected)
        assert json.loads(str(npz["spec"]))["epochs"] == 4
        np.testing.assert_array_equal(npz["classes"], [0, 1, 2])

    again = tmp_path / "w2.npz"
    one_epoch = {**SPEC, "epochs": 1}
    spec_file.write_text(json.dumps(one_epoch))
    result = runner.invoke(app, ["train", str(spec_file), "--data", str(data), "--out",
                                 str(again), "--init", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 8


def test_bad_spec_and_data_exit_2_naming_the_problem(tmp_path: Path) -> None:
    spec_file, data = _files(tmp_path, {**SPEC, "optimizer": {"lr": -1}})
    out = tmp_path / "w.npz"
    result = runner.invoke(app, ["train", str(spec_file), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert "optimizer.lr" in result.stderr
    spec_file.write_text(json.dumps(SPEC))
    np.savez(data, X=np.ones((3, 2)))
    result = runner.invoke(app, ["train", str(spec_file), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert "lacks the arrays y" in result.stderr
    table = tmp_path / "data.csv"
    table.write_text("f0,f1,label\n1,2,0\n")
    result = runner.invoke(app, ["train", str(spec_file), "--data", str(table), "--out", str(out)])
    assert result.exit_code == 2
    assert "data.csv is not an .npz file" in result.stderr and "pickle" not in result.stderr
    assert not out.exists()
