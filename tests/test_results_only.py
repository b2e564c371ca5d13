"""Results-folder entries: metadata, honest status, and that published outputs line up with their datasets."""
from __future__ import annotations

import re

import pytest

from fusionbench.baselines.results_only import ENTRIES
from fusionbench.errors import FusionBenchError
from fusionbench.io import read_image
from fusionbench.paths import data_dir
from fusionbench.registry import KINDS, TASKS, get_method, list_methods

REFUSION_BASELINES = {"defusion", "ddfm", "segmif"}  # (sdnet, metafusion, cddfuse, murf: ports)
PUBLISHED_ON_TNO = {"FusionGAN", "PMGI", "RFN-Nest", "U2Fusion", "PIAFusion"}
PORTED_ELSEWHERE = {"densefuse", "ifcnn", "seafusion", "didfuse", "tardal", "lrrnet", "datfuse", "sdnet", "metafusion", "cddfuse", "murf"}


def test_required_entries_present_and_results_only():
    names = {e.name for e in ENTRIES}
    assert REFUSION_BASELINES <= names
    assert {n.lower() for n in PUBLISHED_ON_TNO} <= names
    assert not names & PORTED_ELSEWHERE  # ports are written elsewhere; no duplicate entries
    assert len(names) == len(ENTRIES)
    for e in ENTRIES:
        assert get_method(e.name) is e or get_method(e.name).factory is not None  # a port may replace it later
        assert e.factory is None and e.weights == ()
        assert e.kind in KINDS and e.tasks and set(e.tasks) <= set(TASKS)
        assert e.paper is not None and e.paper.title and e.paper.venue and 2015 <= e.paper.year <= 2024
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", e.code), e.code
        assert e.code_licence
        assert e.inputs and e.colour
        assert f"--results {e.name}=DIR" in e.results_howto
        assert "python " in e.results_howto  # the command to run
        assert "\n" not in e.results_howto  # one-line error messages


def test_status_is_results_folder_only_and_build_explains():
    listed = {m.name: m for m in list_methods()}
    for e in ENTRIES:
        m = listed[e.name]
        if m.factory is not None:
            continue  # a native port took this name
        with pytest.raises(FusionBenchError, match="results-folder only"):
            m.build()


def test_facts_we_checked():
    by = {e.name: e for e in ENTRIES}
    assert "ECCV" in by["defusion"].paper.venue and by["defusion"].paper.year == 2022
    for n in ("ddfm", "segmif"):
        assert "ICCV" in by[n].paper.venue and by[n].paper.year == 2023
    assert by["ddfm"].kind == "diffusion" and "256x256_diffusion_uncond.pt" in by["ddfm"].results_howto
    assert by["piafusion"].code_licence.startswith("MIT")


@pytest.mark.skipif(data_dir() is None or not (data_dir() / "tno").is_dir(), reason="../shared not found")
def test_published_tno_outputs_match_entries_and_sources():
    """The runner finds published outputs by display name; they must pair with the TNO sources."""
    from fusionbench.data import open_dataset

    ds = open_dataset("tno")
    sizes = {p.stem: read_image(p.a).shape[:2] for p in ds.pairs}
    for label in PUBLISHED_ON_TNO:
        assert label in ds.published
        info = get_method(label)
        assert info.display == label and info.factory is None
        folder = ds.published[label]
        files = sorted(folder.iterdir())
        assert len(files) == 42
        for f in files[:42:7]:  # every 7th: size equals the sources'
            assert read_image(f).shape[:2] == sizes[f.stem], f
