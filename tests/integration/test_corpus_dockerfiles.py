"""Base-image extraction on every Dockerfile of the corpus, checked against a plain reading of its FROM lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.domain.dockerfile import base_images
from tests.support import CORPUS, corpus

DOCKERFILES = sorted(CORPUS.glob("**/Dockerfile")) if CORPUS.is_dir() else [CORPUS / "missing"]
KNOWN = {
    "training-general--tensorflow-2.16-cuda12": [
        "mcr.microsoft.com/azureml/o16n-base/python-assets:20250310.v1",
        "nvcr.io/nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04",
    ],
    "training-finetune_acft_hf_nlp--acpt": [
        r"mcr.microsoft.com/aifx/acpt/stable-ubuntu2204-cu126-py310-torch280:{{latest-image-tag:biweekly\.\d{6}\.\d{1}.*}}",
    ],
    "designer--designer": ["mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:{{latest-image-tag}}"],
    "cli__jobs__single-step__gpu_perf__environments__nvidia__env": ["nvcr.io/nvidia/pytorch:22.02-py3"],
}


def plain_reading(text: str) -> list[str]:
    """FROM lines read naively: flags skipped, stage names and scratch left out (no ARGs in these files)."""
    stages: set[str] = set()
    images: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        words = [w for w in words[1:] if not w.startswith("--")]
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if words[0].lower() not in stages and words[0] != "scratch" and words[0] not in images:
            images.append(words[0])
    return images


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"[-70:])
def test_every_corpus_dockerfile(path: Path) -> None:
    corpus()
    text = path.read_text()
    found = base_images(text)
    assert found, "every Dockerfile has a base"
    if "ARG" not in text and "\\\n" not in text.split("FROM", 1)[0]:
        assert found == plain_reading(text)
    for image in found:
        assert " " not in image and not image.lower().startswith("as ")
        if "{{" in image:
            assert re.search(re.escape(image), text), "templates are kept exactly as written"
    owner = path.parent.parent.name if path.parent.name == "context" else path.parent.name
    if owner in KNOWN:
        assert found == KNOWN[owner]


def test_the_corpus_has_dockerfiles() -> None:
    corpus()
    assert len(DOCKERFILES) >= 40
