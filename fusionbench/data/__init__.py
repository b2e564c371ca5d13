"""Paired-image datasets: layouts, registered names, checks. See :mod:`fusionbench.data.datasets`."""
from .datasets import (
    DATASETS,
    TASKS,
    DatasetEntry,
    Pair,
    PairedDataset,
    check_dataset,
    detect_layout,
    format_check,
    list_datasets,
    open_dataset,
    open_folder,
    read_subset_file,
)

__all__ = [
    "DATASETS", "TASKS", "DatasetEntry", "Pair", "PairedDataset", "check_dataset", "detect_layout", "format_check",
    "list_datasets", "open_dataset", "open_folder", "read_subset_file",
]
