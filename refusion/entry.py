"""Registry entries for ReFusion (entry point ``fusionbench.methods: refusion``).

Importing this module is cheap: no torch, no network; the factories live in
:mod:`fusionbench.refusion.official` and :mod:`fusionbench.refusion.ours`.
"""
from __future__ import annotations

import json
from pathlib import Path

from fusionbench.registry import TASKS, MethodInfo, Paper, WeightFile

PAPER = Paper(
    "ReFusion: Learning Image Fusion from Reconstruction with Learnable Loss via Meta-Learning",
    "IJCV",
    2024,
    "https://arxiv.org/abs/2312.07943",
)
CODE = "https://github.com/HaowenBai/ReFusion"
ORIGIN = "github.com/HaowenBai/ReFusion@54b7334"
LICENCE = "none stated (no LICENSE file in the repository)"

_OFFICIAL_SHA256 = {
    "ivif": "1b8358d8dab5e95c9d3f668782abda85359685669444946001ac41ea96891b2c",
    "mif": "5cc483457390ea8ffeeedbf41287adf23880f860b2f9b6b6045329598fd2e0e5",
    "mfif": "0ba2c1070a37e3a067afa66c39eae7e96e782d9261afcab454af069c460221f2",
    "meif": "6815d372069b2b96a59c02dff31d42d7d5604c5507227c5b6801d967832461d4",
}

INPUTS = (
    "a, b: any mix of grey and RGB; network input = float BT.601 luma of float RGB 0..255 (not rounded), /255, "
    "stacked [a, b]; order ivif (IR, VIS), mif (CT/PET/SPECT, MRI), mfif (near, far), meif (under, over); "
    "output min-max normalised per image, x255, rounded half up (imageio)"
)
COLOUR = (
    "both grey (three equal channels) -> grey output; exactly one colour -> its CrCb (OpenCV float YCrCb, "
    "offset 0.5 on 0..255 data); both colour -> saturation-weighted CrCb fusion; YCrCb->RGB, clip, "
    "imageio min-max stretch over all channels; option output='gray' always returns the Gray file"
)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
OURS_FILE = "refusion_ours_ivif.pt"
OURS_SIDECAR = WEIGHTS_DIR / "refusion_ours_ivif.json"


def _ours_sha256() -> str:
    """sha256 recorded by the trainer beside the bundled weights, or "" when not trained yet."""
    try:
        meta = json.loads(OURS_SIDECAR.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    sha = meta.get("sha256", "") if isinstance(meta, dict) else ""
    return sha if isinstance(sha, str) else ""


OFFICIAL = MethodInfo(
    name="refusion",
    display="ReFusion",
    paper=PAPER,
    kind="meta",
    tasks=TASKS,  # all of them: the official code has an IVIF, MIF, MFIF and MEIF checkpoint
    inputs=INPUTS,
    colour=COLOUR,
    weights=tuple(
        WeightFile(
            name=f"ReFusion_{task.upper()}.pth",
            sha256=sha,
            url=f"https://github.com/HaowenBai/ReFusion/raw/main/models/ReFusion_{task.upper()}.pth",
            licence=LICENCE,
            origin=ORIGIN,
            task=task,
        )
        for task, sha in _OFFICIAL_SHA256.items()
    ),
    factory="fusionbench.refusion.official:build",
    code=CODE,
    code_licence=LICENCE,
    notes="Native PyTorch port of the official F; the official checkpoints load strictly after dropping their "
    "duplicated *.conv.weight keys. Matches the official outputs (see tests/test_refusion_official.py).",
    options={"output": "auto", "layout": "channels_last"},
)

OURS = MethodInfo(
    name="refusion-ours",
    display="ReFusion (ours)",
    paper=PAPER,
    kind="meta",
    tasks=("ivif",),
    inputs=INPUTS,
    colour=COLOUR,
    weights=(
        WeightFile(
            name=OURS_FILE,
            sha256=_ours_sha256(),
            licence="MIT (trained by fusionbench)",
            origin="fusionbench `fusionbench train refusion`",
            task="ivif",
            bundled=f"fusionbench.refusion:weights/{OURS_FILE}",
        ),
    ),
    factory="fusionbench.refusion.ours:build",
    code=CODE,
    code_licence=LICENCE,
    notes="ReFusion F trained by fusionbench's own meta-learning implementation; same inference protocol as "
    "the official IVIF model.",
    options={"output": "auto", "layout": "channels_last"},
)

ENTRIES = [OFFICIAL, OURS]
