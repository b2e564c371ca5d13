"""Parity on the golden images bundled in tests/data/golden (runs on a fresh clone, no ../shared).

Three TNO pairs x six methods x the twelve CDDFuse-evaluator metrics, at the same tolerance as
the full parity test (relative 1e-4, absolute 1e-6 near zero, float64), through the file front
end (``score_files``) and through ``fusionbench score``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.metrics import get_metric, parse_metrics
from fusionbench.metrics.scoring import score_files

GOLDEN = Path(__file__).parent / "data" / "golden"
METHODS = ("DenseFuse", "FusionGAN", "IFCNN", "RFN-Nest", "SeAFusion", "U2Fusion")


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_ops():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reference():
    with open(GOLDEN / "reference_values.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "golden reference values missing"
    return rows


def _close(ours: float, ref: float, rtol=1e-4, atol=1e-6) -> bool:
    return abs(ours - ref) <= max(rtol * abs(ref), atol)


@pytest.mark.parametrize("path", ["native", "eager"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-4), (torch.float32, 1e-6)], ids=["float64", "float32"])
def test_golden_values(dtype, rtol, path, monkeypatch):
    """Both metric paths: the native CPU kernels (when a C compiler is there) and the eager torch kernels."""
    from fusionbench.metrics import _native

    if path == "eager":
        monkeypatch.setenv("FUSIONBENCH_NATIVE", "0")
    elif _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    rows = _reference()
    names = sorted({r["metric"] for r in rows})
    requests = parse_metrics(names, preset="cddfuse")
    label = {n: get_metric(n).name for n in names}
    stems = sorted({r["image"] for r in rows})
    triples = [(f"{m}/{s}", GOLDEN / "tno" / "fused" / m / f"{s}.png", GOLDEN / "tno" / "ir" / f"{s}.png",
                GOLDEN / "tno" / "vi" / f"{s}.png") for m in METHODS for s in stems]
    got = {}
    for key, vals, err in score_files(triples, requests, dtype=dtype, batch_size=4, progress=False, workers=2):
        assert err is None, err
        got[key] = vals
    assert len(got) == len(triples)
    bad = []
    for r in rows:
        ours = got[f"{r['method']}/{r['image']}"][label[r["metric"]]]
        if not _close(ours, float(r["value"]), rtol=rtol):
            bad.append(f"{r['method']}/{r['image']} {r['metric']}: ours {ours!r} ref {r['value']}")
    assert not bad, f"{len(bad)} of {len(rows)} off: " + "; ".join(bad[:8])


def test_golden_through_the_cli(tmp_path):
    rows = [r for r in _reference() if r["method"] == "SeAFusion"]  # RGB fused outputs, grey sources
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(cli, [
        "score", "--ir", str(GOLDEN / "tno" / "ir"), "--vi", str(GOLDEN / "tno" / "vi"),
        "--fused", str(GOLDEN / "tno" / "fused" / "SeAFusion"), "--metrics", ",".join(sorted({r["metric"] for r in rows})),
        "--dtype", "float64", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.stderr
    got = {(r["image"], r["metric"]): float(r["value"]) for r in csv.DictReader(io.StringIO(out.read_text()))}
    for r in rows:
        ours = got[(r["image"], get_metric(r["metric"]).name)]
        assert _close(ours, float(r["value"])), (r, ours)
