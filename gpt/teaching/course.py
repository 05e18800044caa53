"""Where the course's files are, and what a fresh runtime found: the report every notebook's setup cell prints.

The package ships its tokenizer and the reference model as package data. The committed results
(`results/`, `bench/results/`) and the notebooks live beside the package in the repository: a source
checkout has them, and so does the clone that the notebooks' setup cell makes in Colab (it installs
that clone with `pip install -e` and puts it on `sys.path`). A plain `pip install` of the package has
no results; `results_dir()` then says so instead of returning a folder that is not there.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import torch

from ..errors import DataError
from .reference import reference_path


def course_root() -> Path:
    """The repository folder that holds this package (a checkout or the setup cell's clone)."""
    return Path(__file__).resolve().parents[2]


def results_dir(*parts: str, must_exist: bool = False) -> Path:
    """`results/<parts>` of the course checkout, e.g. `results_dir("finetune")`."""
    path = course_root().joinpath("results", *parts)
    if must_exist and not path.exists():
        raise DataError(
            f"{path} does not exist: the committed results come with a clone of the course repository, "
            "not with a plain `pip install`. Run the notebook's setup cell in a fresh runtime (it clones the "
            "course), or work from a checkout.")
    return path


def version() -> str:
    try:
        return metadata.version("gpt-course")
    except metadata.PackageNotFoundError:  # on sys.path without being installed
        return "(not installed)"


def gpu_description() -> str:
    """One line: which GPU torch sees, or that there is none."""
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"GPU found: {', '.join(names)}"
    return f"no GPU found: running on the CPU ({torch.get_num_threads()} threads)"


def report(print_fn=print) -> dict:
    """Print (and return) what this runtime has: the package, the reference model, the results, a GPU."""
    found = {
        "package": f"gpt-course {version()} at {course_root()}",
        "reference model": reference_path().is_file(),
        "results": results_dir("finetune", "results.csv").is_file(),
        "gpu": torch.cuda.is_available(),
    }
    print_fn(found["package"])
    print_fn(f"reference model: {'found' if found['reference model'] else 'MISSING'} ({reference_path()})")
    print_fn(f"committed results: {'found' if found['results'] else 'not here (a plain pip install has none)'} "
             f"({results_dir()})")
    print_fn(gpu_description())
    if os.environ.get("GPT_PROFILE"):
        print_fn(f"profile: {os.environ['GPT_PROFILE']}")
    return found
