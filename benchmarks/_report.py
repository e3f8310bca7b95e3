"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this
folder is on ``sys.path``)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """``../shared/datasets`` next to the checkout when it exists, else None (the loaders then
    look in ``$RECFB_DATA_DIR`` and the cache)."""
    shared = ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


def emit(lines: list[str], output: Path | None) -> str:
    """Print the markdown report and write it to ``output`` when given."""
    report = "\n".join(lines)
    print("\n" + report)
    if output:
        Path(output).write_text(report + "\n")
    return report
