"""Fuzzing the Dockerfile readers: any text gives base images or envhub's own refusal, never a crash."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from shared.domain.dockerfile import NOT_AN_IMAGE, base_images
from shared.domain.errors import EnvhubError
from shared.domain.templates import image_sites, package_sites
from tests.unit.fuzzing import FUZZ, parses_or_refuses

INSTRUCTIONS = ["FROM", "from", "ARG", "ENV", "COPY", "ADD", "RUN", "WORKDIR", "USER", "ONBUILD", "LABEL", "SHELL",
                "CMD", "ENTRYPOINT", "HEALTHCHECK", "EXPOSE", "VOLUME", "STOPSIGNAL", "MAINTAINER", "BOGUS", "#", ""]
WORDS = ["busybox", "ubuntu:22.04", "mcr.microsoft.com/azureml/base:{{latest-image-tag}}",
         r"img:{{latest-image-tag:\d{8}\.v\d+}}", "{{latest-image-tag:}}", "{{", "}}", "{{latest-pypi-version}}",
         "azureml-core=={{latest-pypi-version:pre}}", "pkg[extra]~={{latest-pypi-version:bad}}", "AS", "as", "build",
         "scratch", "--platform=$BUILDPLATFORM", "--from=build", "--from=img:{{latest-image-tag}}", "--chown=1:1",
         "$BASE", "${BASE}", "${BASE:-busybox}", "${BASE:+x}", "${BASE:?unset}", "${", "$", "BASE=busybox",
         "BASE", "TAG=1.0", "img:${TAG}", "\\", "\\\n", "`", "'", '"', "=", "[", "]", '["sh", "-c"]', "é", "\t",
         "x" * 300, "# escape=`", "# syntax=docker/dockerfile:1", "<<EOF", "EOF", "\x00", "\r"]


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    """Lines of instructions and words from Dockerfiles' corners: parser directives, continuations, variables,
    stages, heredocs and templates."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        words = draw(st.lists(st.sampled_from(WORDS) | st.text(max_size=6), max_size=5))
        lines.append(" ".join([draw(st.sampled_from(INSTRUCTIONS)), *words]))
    return draw(st.sampled_from(["\n", "\r\n", "\\\n"])).join(lines)


def check(text: str) -> None:
    outcome = parses_or_refuses(lambda: base_images(text))
    if isinstance(outcome, list):
        assert all(image and not image.startswith("-") and not any(c.isspace() for c in image) for image in outcome)
        assert NOT_AN_IMAGE not in outcome and len(set(outcome)) == len(outcome)
    parses_or_refuses(lambda: image_sites(text))
    parses_or_refuses(lambda: package_sites(text, where="Dockerfile"))


@FUZZ
@given(st.text())
def test_any_text_as_a_dockerfile(text: str) -> None:
    check(text)


@FUZZ
@given(dockerfiles())
@example("FROM --platform=$X")  # once the base image '--platform=$X'
@example("ARG\nFROM busybox")  # once an IndexError inside dockerfile-parse
@example("FROM {{ mcr.microsoft.com/azureml/base:{{latest-image-tag}}")  # once the base '{{ mcr...}}', spaces and all
@example("FROM ${BASE:?unset}")
@example("ARG BASE\nFROM $BASE AS")
def test_dockerfile_like_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), st.sampled_from(WORDS))
def test_a_from_line_with_args_before_it(words: list[str], default: str) -> None:
    text = f"ARG BASE={default}\nARG TAG\nFROM {' '.join(words)}\nRUN true\nFROM scratch AS last\nCOPY --from=0 / /\n"
    outcome = parses_or_refuses(lambda: base_images(text))
    assert isinstance(outcome, list | EnvhubError)
