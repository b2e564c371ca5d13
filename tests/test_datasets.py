"""Paired datasets: layouts, pairing problems, subsets, registered names, the bundled sample, `data` CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.data import DATASETS, check_dataset, list_datasets, open_dataset, read_subset_file
from fusionbench.errors import DataError, UnknownNameError, UsageError
from fusionbench.io import read_image, write_image
from fusionbench.paths import SAMPLE_DIR, data_dir

RNG = np.random.default_rng(0)


def put(path: Path, h=8, w=10, c=1, value=None):
    shape = (h, w) if c == 1 else (h, w, c)
    img = RNG.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    write_image(path, img)


def make(root: Path, a: str, b: str, stems=("1", "2", "3"), **kw):
    for s in stems:
        put(root / a / f"{s}.png", **kw)
        put(root / b / f"{s}.png", **kw)
    return root


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


needs_data = pytest.mark.skipif(data_dir() is None, reason="../shared not found (set FUSIONBENCH_DATA)")


# ------------------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("a,b,task,labels", [
    ("ir", "vi", "ivif", ("ir", "vi")),                      # MSRS, TNO, VIFB, ../shared/data
    ("Ir", "Vis", "ivif", ("ir", "vi")),                     # M3FD, case-insensitive
    ("cropinfrared", "crop_LR_visible", "ivif", ("ir", "vi")),  # RoadScene
    ("infrared", "visible", "ivif", ("ir", "vi")),           # LLVIP / ReFusion test_cases
    ("CT", "MRI", "mif", ("ct", "mri")),                     # medical: a = CT/PET/SPECT, b = MRI
    ("PET", "MRI", "mif", ("pet", "mri")),
    ("SPECT", "MRI", "mif", ("spect", "mri")),
    ("near", "far", "mfif", ("near", "far")),
    ("under", "over", "meif", ("under", "over")),
    ("A", "B", "ivif", ("a", "b")),                          # generic, task assumed
    ("a", "b", "ivif", ("a", "b")),
])
def test_layouts_are_recognised(tmp_path, a, b, task, labels):
    root = make(tmp_path / "ds", a, b)
    ds = open_dataset(root)
    assert (ds.task, ds.a_label, ds.b_label) == (task, *labels)
    assert ds.stems == ["1", "2", "3"]
    assert ds.pairs[0].a.parent.name == a and ds.pairs[0].b.parent.name == b
    assert ds.name == "ds" and ds.root == root.resolve()


def test_generic_layout_takes_task_and_notes_the_guess(tmp_path):
    root = make(tmp_path / "lytro", "A", "B")
    assert any("assuming ivif" in n for n in open_dataset(root).notes)
    assert open_dataset(root, task="mfif").task == "mfif"
    with pytest.raises(UsageError):
        open_dataset(root, task="fusion")


def test_splits_llvip_and_msrs(tmp_path):
    llvip = tmp_path / "LLVIP"
    for split in ("train", "test"):
        make(llvip, f"infrared/{split}", f"visible/{split}", stems=(f"{split}1", f"{split}2"))
    ds = open_dataset(llvip)
    assert ds.stems == ["test1", "test2"] and any("test" in n for n in ds.notes)
    assert open_dataset(llvip, split="train").stems == ["train1", "train2"]
    msrs = tmp_path / "MSRS"
    make(msrs / "test", "ir", "vi", stems=("00001D",))
    make(msrs / "train", "ir", "vi", stems=("00002D",))
    assert open_dataset(msrs).stems == ["00001D"]
    assert open_dataset(msrs, split="train").stems == ["00002D"]


def test_ambiguous_medical_and_explicit_folders(tmp_path):
    root = make(tmp_path / "med", "MRI", "CT")
    make(root, "MRI", "PET")
    with pytest.raises(DataError, match="a=<folder>"):
        open_dataset(root)
    ds = open_dataset(root, a="PET", b="MRI", task="mif")
    assert (ds.a_label, ds.b_label, ds.layout) == ("pet", "mri", "explicit")


def test_unrecognised_layout_and_missing_folder(tmp_path):
    (tmp_path / "x" / "foo").mkdir(parents=True)
    (tmp_path / "x" / "bar").mkdir()
    with pytest.raises(DataError, match="cannot recognise the layout.*bar, foo"):
        open_dataset(tmp_path / "x")
    with pytest.raises(UsageError, match="no such folder"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(UnknownNameError, match="Did you mean: tno"):
        open_dataset("tn0")


def test_published_folders_and_subset(tmp_path):
    root = make(tmp_path / "ds", "ir", "vi", stems=("01", "02", "03", "04"))
    for s in ("01", "02", "03"):
        put(root / "fused" / "SDNet" / f"{s}.png")
    (root / "fused" / "empty").mkdir()
    ds = open_dataset(root)
    assert list(ds.published) == ["SDNet"]
    sub = ds.subset(["03", "01", "03"])
    assert sub.stems == ["03", "01"] and sub.subset_of == "ds" and sub.published == ds.published
    assert ds["02"].stem == "02" and len(ds) == 4
    with pytest.raises(DataError, match="2 stem"):
        ds.subset(["01", "99", "98"])
    (tmp_path / "s.txt").write_text("# comment\n04\n\n02\n")
    assert open_dataset(root, subset=tmp_path / "s.txt").stems == ["04", "02"]


# ------------------------------------------------------------------------------------------- problems

def test_unpaired_files_are_reported_and_strict_raises(tmp_path):
    root = make(tmp_path / "ds", "ir", "vi")
    put(root / "ir" / "only_ir.png")
    put(root / "vi" / "only_vi.png")
    ds = open_dataset(root)
    assert ds.stems == ["1", "2", "3"]
    assert ds.unpaired == {"ir": ["only_ir"], "vi": ["only_vi"]}
    probs = check_dataset(ds)["problems"]
    assert any("ir/only_ir" in p for p in probs) and any("vi/only_vi" in p for p in probs)
    with pytest.raises(DataError, match="only_ir"):
        open_dataset(root, strict=True)


def test_check_reports_sizes_modes_bits_and_problems(tmp_path):
    root = tmp_path / "ds"
    put(root / "ir" / "g.png", 8, 10)                       # grey
    put(root / "vi" / "g.png", 8, 10, c=3)                  # colour
    grey3 = np.repeat(RNG.integers(0, 256, (8, 10, 1), dtype=np.uint8), 3, axis=2)
    write_image(root / "ir" / "h.png", grey3)               # grey stored as RGB
    write_image(root / "vi" / "h.png", grey3)
    from PIL import Image
    Image.fromarray(np.full((8, 10), 40000, np.uint16)).save(root / "ir" / "s.png")  # 16-bit
    put(root / "vi" / "s.png", 8, 12)                       # size mismatch
    (root / "ir" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # unreadable
    put(root / "vi" / "bad.png")
    rep = check_dataset(open_dataset(root))
    assert rep["pairs"] == 4
    assert rep["sides"]["ir"]["modes"] == {"grey": 2, "grey-stored-as-RGB": 1}
    assert rep["sides"]["vi"]["modes"] == {"colour": 1, "grey-stored-as-RGB": 1, "grey": 2}
    assert rep["sides"]["ir"]["bit_depth"]["16"] == 1
    assert rep["sizes"]["distinct"] == 1 and rep["sizes"]["most_common"][0] == ["10x8", 3]
    probs = "\n".join(rep["problems"])
    assert "size mismatch: s: ir 10x8 (s.png) vs vi 12x8 (s.png)" in probs
    assert "unreadable:" in probs and "bad.png" in probs
    # CLI: non-zero exit with problems, JSON on stdout
    r = run("data", "check", root, "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert len(out["problems"]) == 2


def test_check_published_outputs(tmp_path):
    root = make(tmp_path / "ds", "ir", "vi", stems=("1", "2"))
    put(root / "fused" / "M" / "1.png")
    put(root / "fused" / "M" / "7.png")            # no source pair
    put(root / "fused" / "N" / "1.png", 4, 4)       # wrong size
    rep = check_dataset(open_dataset(root))
    assert rep["published"]["M"]["matched"] == 1 and rep["published"]["M"]["without_output"] == 1
    probs = "\n".join(rep["problems"])
    assert "M/7.png has no source pair" in probs and "published N/1.png is 4x4" in probs
    r = run("data", "check", root)
    assert r.exit_code == 1 and "problems  2" in r.stdout


def test_clean_folder_exits_zero(tmp_path):
    root = make(tmp_path / "ds", "ir", "vi")
    r = run("data", "check", root)
    assert r.exit_code == 0, r.output
    assert "problems  none" in r.stdout and "pairs     3" in r.stdout


# ------------------------------------------------------------------------------------------- names

def test_sample_works_without_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSIONBENCH_DATA", str(tmp_path / "absent"))
    ds = open_dataset("sample")
    assert len(ds) == 6 and ds.task == "ivif" and (ds.a_label, ds.b_label) == ("ir", "vi")
    assert ds.stems == ["05", "08", "11", "34", "35", "36"] and ds.published == {}
    rep = check_dataset(ds)
    assert rep["problems"] == [] and rep["sides"]["ir"]["modes"] == {"grey-stored-as-RGB": 6}
    with pytest.raises(DataError, match="FUSIONBENCH_DATA"):
        open_dataset("tno")
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["sample"]["available"] and not rows["tno"]["available"]
    r = run("data", "check", "tno")
    assert r.exit_code == 1 and "FUSIONBENCH_DATA" in r.output


def test_sample_size_licence_and_pixels():
    files = sorted(p for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) < 1.5e6
    readme = (SAMPLE_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "dba5bf3d507e09227993ca9743776bf05ce35c51" in readme and "Toet" in readme
    assert not (SAMPLE_DIR / "fused").exists()  # published outputs have no licence: not shipped
    d = data_dir()
    if d is None or not (d / "tno").is_dir():
        pytest.skip("../shared not found: pixel identity with the TNO originals not checked")
    for side in ("ir", "vi"):
        for p in sorted((SAMPLE_DIR / side).glob("*.png")):
            assert np.array_equal(read_image(p), read_image(d / "tno" / side / p.name)), p


@needs_data
def test_registered_datasets_open_with_expected_counts():
    for e in DATASETS.values():
        if not e.available:
            continue
        ds = open_dataset(e.name)
        assert len(ds) == e.pairs, e.name
        assert ds.task == e.task and ds.unpaired == {}
    tno = open_dataset("tno")
    assert {"SDNet", "DenseFuse", "U2Fusion", "RFN-Nest"} <= set(tno.published)
    t25 = open_dataset("tno25")
    # the CDDFuse split maps to TNO-42 stems (cddfuse 05 is tno 06, 25 is 42)
    assert t25.stems[:5] == ["01", "02", "03", "04", "06"] and t25.stems[-1] == "42" and t25.subset_of == "tno"
    assert len(open_dataset("roadscene50")) == 50
    mc = open_dataset("mri_ct")
    assert (mc.a_label, mc.b_label) == ("ct", "mri") and mc.pairs[0].a.parent.name == "ct"
    assert check_dataset(open_dataset("refusion_mif"))["problems"] == []


@needs_data
def test_subset_files_parse():
    d = data_dir()
    assert len(read_subset_file(d / "tno/subsets/cddfuse_test25.csv")) == 25
    stems = read_subset_file(d / "roadscene/subsets/cddfuse_test50.txt")
    assert len(stems) == 50 and all(s.startswith("FLIR_") for s in stems)


def test_data_list_cli():
    r = run("data", "list", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    names = [x["name"] for x in rows]
    for n in ("sample", "tno", "tno25", "roadscene", "roadscene50", "msrs", "vifb", "llvip", "ifcnn_iv", "mri_ct",
              "mri_pet", "mri_spect", "ifcnn_md", "refusion_mif", "refusion_mfif", "refusion_meif"):
        assert n in names
    r = run("data", "list")
    assert r.exit_code == 0 and "sample" in r.stdout
    r = run("data", "check", "tnoo")
    assert r.exit_code == 2 and "Did you mean" in r.output
