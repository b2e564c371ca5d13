"""``fusionbench score``: score fused images against their two sources.

Files are paired by stem across the three folders (png, jpg, bmp, tif). Output is a long CSV
``image,metric,value`` on stdout or ``--out`` (written atomically); a progress bar, notes and a
table of means go to stderr.

Bad input: a missing folder is a usage error (exit 2); an empty folder, files without a
counterpart (unless ``--skip-missing``), size mismatches and undecodable files are data errors
(exit 1). With ``--keep-going`` the images that can be scored are scored and written, the bad
files are listed, and the exit code is 1. 16-bit images are scaled to 8 bit as each preset's
reference reads them (cddfuse: v >> 8 as cv2.imread; vifb: round(v / 257) as MATLAB im2uint8); grey and colour files can be mixed (each preset converts them its own way); constant images get
the documented values listed by ``fusionbench metrics --json``.
"""
from __future__ import annotations

from pathlib import Path

import click

from .options import batch_size_option, device_option, dtype_option, preset_option, quiet_option


def _fmt(v: float) -> str:
    return repr(float(v))


@click.command("score", short_help="Score fused images against their sources.")
@click.option("--ir", "--a", "ir", required=True, metavar="DIR",
              help="First source folder (infrared; --a for other tasks: CT/PET/SPECT, near focus, under-exposed).")
@click.option("--vi", "--b", "vi", required=True, metavar="DIR",
              help="Second source folder (visible; --b for other tasks: MRI, far focus, over-exposed).")
@click.option("--fused", required=True, metavar="DIR", help="Folder of fused images.")
@click.option("--metrics", "metrics", default="all", show_default=True, metavar="LIST",
              help="Comma-separated names (EN,SD,SF,AG,SCD,SSIM), 'all', or NAME@PRESET (e.g. SSIM@vifb).")
@preset_option()
@device_option()
@dtype_option()
@batch_size_option(16, help="Images scored together (same size); at most workers + 1 batches are in memory.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE",
              help="Write the CSV (or JSON) here (atomically) instead of stdout.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON instead of CSV: preset, dtype, backend (native/eager kernels, device), per-image values "
                   "(null: undefined, \"inf\": infinite), failed images.")
@click.option("--skip-missing", is_flag=True, help="Score the stems present in all three folders; list the others.")
@click.option("--keep-going", is_flag=True, help="Skip unreadable or mismatched images, write the rest, exit 1.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Threads that decode files and (on CPU) score batches (default: CPU count, at most 8).")
@quiet_option("No progress bar, notes or table of means.")
def score(ir, vi, fused, metrics, preset, device, dtype, batch_size, out, as_json, skip_missing, keep_going,
          workers, quiet):
    """Score every fused image against its two sources; print a long CSV image,metric,value.

    Files are paired by stem (png, jpg, bmp, tif). Exit codes: 0 ok, 1 data problem (empty
    folder, files without counterpart, size mismatch, unreadable file), 2 usage error. With
    --keep-going the good images are still written. 16-bit files are scaled to 8 bit as the
    preset's reference reads them (cddfuse: v >> 8, as cv2.imread; vifb: round(v / 257)); grey and colour files may be mixed (each preset converts them its own way);
    constant images get the documented values of `fusionbench metrics --json`.
    """
    from ..device import pick_device, pick_dtype
    from ..errors import DataError
    from ..metrics import get_preset, parse_metrics
    from ..metrics.scoring import score_folders

    preset_name = get_preset(preset).name
    requests = parse_metrics(metrics, preset=preset_name)
    from ..metrics.scoring import tune_allocator

    tune_allocator()  # a process-wide malloc setting: the command's choice, never the library's
    if out:
        from ..io import ensure_dir

        ensure_dir(Path(out).parent)  # an unwritable --out fails now, before the scoring
    dev = pick_device(device)
    dt = pick_dtype(dtype)
    notes: dict[str, list[str]] = {}

    def on_note(stem, msg):
        notes.setdefault(msg, []).append(stem)

    pairing, results = score_folders({"fused": fused, "ir/a": ir, "vi/b": vi}, requests, skip_missing=skip_missing,
                                     device=dev, dtype=dt, batch_size=batch_size, progress=not quiet,
                                     label=f"scoring ({preset_name})", workers=workers, on_note=on_note)
    if pairing.missing and not quiet:
        for label, stems in pairing.missing.items():
            shown = ", ".join(stems[:8]) + (f" (+{len(stems) - 8} more)" if len(stems) > 8 else "")
            click.echo(f"skipped {len(stems)} stem(s) missing from {label}: {shown}", err=True)
    values: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for stem, vals, err in results:
        if err is not None:
            if not keep_going:
                results.close()
                raise DataError(f"{err} (use --keep-going to score the other images)")
            failed[stem] = err
            continue
        values[stem] = vals

    labels = [r.label for r in requests]
    if as_json:
        text = _json_text(requests, preset_name, dt, dev, pairing.stems, values, failed)
    else:
        lines = ["image,metric,value"]
        for stem in pairing.stems:
            if stem in values:
                lines += [f"{_csv_field(stem)},{lab},{_fmt(values[stem][lab])}" for lab in labels]
        text = "\n".join(lines) + "\n"
    if out:
        from ..io import write_text_atomic

        write_text_atomic(out, text)
    else:
        click.echo(text, nl=False)

    if not quiet:
        for msg, stems in notes.items():
            shown = ", ".join(stems[:6]) + (f" (+{len(stems) - 6} more)" if len(stems) > 6 else "")
            click.echo(f"note: {msg}: {shown}", err=True)
        if values:
            _print_means(requests, values)
    if failed:
        for err in failed.values():
            click.echo(f"failed: {err}", err=True)
        raise DataError(f"{len(failed)} of {len(pairing.stems)} image(s) could not be scored; "
                        f"the other {len(values)} were written{' to ' + out if out else ''}")


def _json_value(v: float):
    import math

    v = float(v)
    return None if math.isnan(v) else (("inf" if v > 0 else "-inf") if math.isinf(v) else v)


def _json_text(requests, preset, dtype, device, stems, values, failed) -> str:
    import json

    from ..metrics.presets import get_preset
    from ..metrics.scoring import backend

    presets = tuple(dict.fromkeys(r.preset for r in requests))
    doc = {
        "preset": preset,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None
        else {p: get_preset(p).default_dtype for p in presets},
        "backend": backend(device, presets),
        "metrics": [r.label for r in requests],
        "images": {s: {r.label: _json_value(values[s][r.label]) for r in requests} for s in stems if s in values},
        "failed": failed,
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _csv_field(s: str) -> str:
    if any(ch in s for ch in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def _print_means(requests, values) -> None:
    import math

    n = len(values)
    rows = []
    for r in requests:
        vs = [v[r.label] for v in values.values()]
        finite = [x for x in vs if math.isfinite(x)]
        mean = sum(vs) / n if len(finite) == n else (sum(finite) / len(finite) if finite else float("nan"))
        n_inf, n_nan = sum(math.isinf(x) for x in vs), sum(math.isnan(x) for x in vs)
        left = [f"{k} {what}" for k, what in ((n_inf, "infinite"), (n_nan, "undefined")) if k]
        extra = f" ({', '.join(left)} left out)" if left else ""
        rows.append((r.label, f"{mean:.6g}{extra}", r.metric.direction))
    w0 = max(len("metric"), *(len(r[0]) for r in rows))
    w1 = max(len("mean"), *(len(r[1]) for r in rows))
    click.echo(f"means over {n} image(s):", err=True)
    click.echo(f"  {'metric':<{w0}}  {'mean':>{w1}}  better", err=True)
    for name, mean, d in rows:
        click.echo(f"  {name:<{w0}}  {mean:>{w1}}  {d}", err=True)
