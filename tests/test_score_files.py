"""score_files: files shared by several triples are decoded once, within a memory bound."""
from __future__ import annotations

import numpy as np
import pytest

from fusionbench.io import write_image
from fusionbench.metrics import parse_metrics, scoring


@pytest.fixture
def shared_sources(tmp_path):
    """4 fused images per source pair, 3 source pairs: 12 triples over 6 source files."""
    g = np.random.default_rng(0)
    triples = []
    for k in range(3):
        a, b = tmp_path / f"ir{k}.png", tmp_path / f"vi{k}.png"
        write_image(a, g.integers(0, 256, (40, 48), dtype=np.uint8))
        write_image(b, g.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        for m in range(4):
            f = tmp_path / f"f{k}_{m}.png"
            write_image(f, g.integers(0, 256, (40, 48, 3), dtype=np.uint8))
            triples.append((f"{k}_{m}", f, a, b))
    return triples


def _run(triples, **kw):
    reqs = parse_metrics("EN,SD,SSIM,MI", preset="cddfuse")
    return {st: (vals, err) for st, vals, err in scoring.score_files(triples, reqs, progress=False, batch_size=3, **kw)}


def _count_decodes(monkeypatch):
    seen = []
    real = scoring._decode

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(scoring, "_decode", counting)
    return seen


def test_shared_sources_are_decoded_once(shared_sources, monkeypatch):
    alone = {t[0]: _run([t])[t[0]] for t in shared_sources}  # each triple on its own
    seen = _count_decodes(monkeypatch)
    got = _run(shared_sources, workers=2)
    assert sorted(seen) == sorted({p.name for t in shared_sources for p in t[1:]})  # 18 files, once each
    assert got == alone


def test_shared_decodings_beyond_the_bound_are_dropped_and_decoded_again(shared_sources, monkeypatch):
    want = _run(shared_sources)
    monkeypatch.setattr(scoring, "SHARED_DECODE_BYTES", 1)  # keep at most one decoding
    seen = _count_decodes(monkeypatch)
    assert _run(shared_sources, workers=2) == want
    assert len(seen) > 18


def test_a_bad_shared_source_fails_every_triple_using_it(shared_sources):
    shared_sources[0][2].write_bytes(shared_sources[0][2].read_bytes()[:200])  # truncate ir0.png
    got = _run(shared_sources)
    bad = {st for st, (vals, err) in got.items() if err}
    assert bad == {"0_0", "0_1", "0_2", "0_3"}
    assert all("ir0.png" in got[st][1] for st in bad)


def test_a_decode_cache_carries_sources_across_calls_and_notices_changes(shared_sources, monkeypatch):
    seen = _count_decodes(monkeypatch)
    cache = scoring.DecodeCache()
    first = _run(shared_sources[:4], decode_cache=cache)  # source pair 0 and 4 fused images
    n = len(seen)
    again = _run(shared_sources[:4], decode_cache=cache)
    assert again == first and len(seen) - n == 4  # only the fused images are decoded again
    ir0 = shared_sources[0][2]
    write_image(ir0, np.zeros((40, 48), dtype=np.uint8) + 7)  # the source changes on disk
    n = len(seen)
    changed = _run(shared_sources[:4], decode_cache=cache)
    assert ir0.name in seen[n:]
    assert changed["0_0"][0]["MI"] != first["0_0"][0]["MI"]


def test_the_library_leaves_the_allocator_alone(tmp_path):
    """glibc's malloc settings are process-wide: score_files never changes them (the CLI commands opt in)."""
    import subprocess
    import sys

    code = ("import numpy as np, torch; from fusionbench.io import write_image; "
            f"from fusionbench.metrics import scoring as S; import pathlib; d = pathlib.Path({str(tmp_path)!r}); "
            "[write_image(d / f'{r}.png', np.full((32, 32, 1), 9, np.uint8)) for r in 'fab']; "
            "list(S.score_files([('x', d / 'f.png', d / 'a.png', d / 'b.png')], 'EN', progress=False)); "
            "print(S._ALLOCATOR_TUNED)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
