"""The cache-key hash: what changes it, what leaves it alone, and the anonymous version beside it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import yaml

from shared.domain import anonymous, hashing
from shared.domain.context import ContextManifest, FileEntry
from shared.domain.definition import Definition, Kind, parse_document
from shared.domain.hashing import ResolvedContext, canonical_form, definition_hash, image_name

BASE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1"
DOCKERFILE = f"FROM {BASE}\nCOPY . /app\n"
CONDA: dict[str, Any] = {
    "name": "project",
    "channels": ["conda-forge", "defaults"],
    "dependencies": ["python=3.11", "pip", {"pip": ["numpy==1.26.4", "pandas==2.2.2"]}],
}
YAML_TEXT = """\
name: train-env
version: "3"
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1
conda_file:
  channels:
    - conda-forge
  dependencies:
    - python=3.11
    - pip:
        - numpy==1.26.4
"""


def _doc(**fields: Any) -> dict[str, Any]:
    return {"name": "train-env", "version": "1", "image": BASE, "conda_file": CONDA, **fields}


def _defn(doc: dict[str, Any], *, curated: bool = False) -> Definition:
    return parse_document(doc, curated=curated).definition


def _hash(**fields: Any) -> str:
    return definition_hash(_defn(_doc(**fields)))


def _yaml_hash(text: str) -> str:
    return definition_hash(_defn(yaml.safe_load(text)))


def _entry(path: str, content: str, executable: bool = False) -> FileEntry:
    data = content.encode()
    return FileEntry(path=path, executable=executable, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _manifest(files: dict[str, str], executable: Iterable[str] = ()) -> ContextManifest:
    marked = set(executable)
    return ContextManifest.of(_entry(path, text, path in marked) for path, text in files.items())


def _files(**overrides: str) -> dict[str, str]:
    return {"Dockerfile": DOCKERFILE, "app/train.py": "print('train')\n", "run.sh": "#!/bin/sh\n", **overrides}


def _build_hash(
    files: dict[str, str],
    *,
    dockerignore: str | None = None,
    executable: Iterable[str] = (),
    **build: Any,
) -> str:
    manifest = _manifest(files, executable)
    definition = _defn({"name": "built", "build": {"context": manifest.digest, **build}})
    return definition_hash(definition, ResolvedContext(manifest=manifest, dockerignore=dockerignore))


def test_renaming_keeps_hash() -> None:
    assert _hash(name="other-name") == _hash()


def test_reversioning_keeps_hash() -> None:
    assert _hash(version="42") == _hash()


def test_redescribing_keeps_hash() -> None:
    assert _hash(description="a new description") == _hash(description="the first description")


def test_changing_tags_keeps_hash() -> None:
    assert _hash(tags={"team": "vision", "stage": "prod"}) == _hash(tags={"team": "nlp"})


def test_changing_properties_keeps_hash() -> None:
    assert _hash(properties={"owner": "alice"}) == _hash(properties={"owner": "bob", "extra": "1"})


def test_yaml_comments_keep_hash() -> None:
    commented = "# an environment\n" + YAML_TEXT.replace("- pip:", "- pip:  # pip packages") + "# end\n"
    assert _yaml_hash(commented) == _yaml_hash(YAML_TEXT)


def test_yaml_indentation_keeps_hash() -> None:
    reindented = YAML_TEXT.replace("\n  ", "\n    ")
    assert reindented != YAML_TEXT
    assert _yaml_hash(reindented) == _yaml_hash(YAML_TEXT)


def test_yaml_mapping_key_order_keeps_hash() -> None:
    reordered = """\
conda_file:
  dependencies: [python=3.11, {pip: [numpy==1.26.4]}]
  channels: [conda-forge]
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1
version: "3"
name: train-env
"""
    assert _yaml_hash(reordered) == _yaml_hash(YAML_TEXT)


def test_reordering_conda_dependencies_changes_hash() -> None:
    deps = CONDA["dependencies"]
    swapped = {**CONDA, "dependencies": [deps[1], deps[0], deps[2]]}
    assert _hash(conda_file=swapped) != _hash()


def test_reordering_channels_changes_hash() -> None:
    assert _hash(conda_file={**CONDA, "channels": ["defaults", "conda-forge"]}) != _hash()


def test_reordering_nested_pip_packages_changes_hash() -> None:
    pip = {"pip": ["pandas==2.2.2", "numpy==1.26.4"]}
    assert _hash(conda_file={**CONDA, "dependencies": ["python=3.11", "pip", pip]}) != _hash()


def test_other_base_image_tag_changes_hash() -> None:
    assert _hash(image=BASE.replace("20240101.v1", "20240102.v1")) != _hash()


def test_context_file_content_changes_hash() -> None:
    assert _build_hash(_files(**{"app/train.py": "print('train v2')\n"})) != _build_hash(_files())


def test_executable_bit_changes_hash() -> None:
    assert _build_hash(_files(), executable=["run.sh"]) != _build_hash(_files())


def test_renaming_context_file_changes_hash() -> None:
    renamed = {"Dockerfile": DOCKERFILE, "app/fit.py": "print('train')\n", "run.sh": "#!/bin/sh\n"}
    assert _build_hash(renamed) != _build_hash(_files())


def test_editing_dockerignored_file_keeps_hash() -> None:
    ignore = "secrets/\n*.log\n"
    before = _build_hash(_files(**{"debug.log": "a\n", "secrets/key": "1"}), dockerignore=ignore)
    after = _build_hash(_files(**{"debug.log": "b\n", "secrets/key": "2"}), dockerignore=ignore)
    assert before == after


def test_editing_included_file_changes_hash_despite_dockerignore() -> None:
    ignore = "*.log\n"
    before = _build_hash(_files(**{"debug.log": "a\n"}), dockerignore=ignore)
    after = _build_hash(_files(**{"debug.log": "a\n", "app/train.py": "print(2)\n"}), dockerignore=ignore)
    assert before != after


def test_dockerignore_exception_reincludes_file() -> None:
    def edited(text: str, ignore: str) -> tuple[str, str]:
        return (_build_hash(_files(**{"keep.log": "a\n"}), dockerignore=ignore),
                _build_hash(_files(**{"keep.log": text}), dockerignore=ignore))

    excluded_before, excluded_after = edited("b\n", "*.log\n")
    included_before, included_after = edited("b\n", "*.log\n!keep.log\n")
    assert excluded_before == excluded_after
    assert included_before != included_after


def test_dockerfile_always_included_even_when_dockerignored() -> None:
    ignore = "Dockerfile\n"
    changed = _files(Dockerfile=DOCKERFILE + "RUN true\n")
    assert _build_hash(changed, dockerignore=ignore) != _build_hash(_files(), dockerignore=ignore)
    assert _build_hash(_files(), dockerignore=ignore) == _build_hash(_files())


def test_dockerfile_path_spellings_normalise() -> None:
    plain = _build_hash(_files(), dockerfile_path="Dockerfile")
    assert _build_hash(_files(), dockerfile_path="./Dockerfile") == plain
    assert _build_hash(_files()) == plain


def test_other_dockerfile_path_changes_hash() -> None:
    files = _files(**{"docker/Dockerfile": DOCKERFILE})
    assert _build_hash(files, dockerfile_path="docker/Dockerfile") != _build_hash(files)


def test_os_type_missing_means_linux() -> None:
    assert _hash(os_type="linux") == _hash()


def test_windows_os_type_changes_hash() -> None:
    assert _hash(os_type="windows") != _hash()


def test_inference_config_changes_hash() -> None:
    config = {"liveness_route": {"port": 5001, "path": "/"}, "scoring_route": {"port": 5001, "path": "/score"}}
    moved = {**config, "scoring_route": {"port": 5002, "path": "/score"}}
    assert _hash(inference_config=config) != _hash()
    assert _hash(inference_config=moved) != _hash(inference_config=config)


def test_kind_matters() -> None:
    user = Definition(kind=Kind.USER_IMAGE, image=BASE)
    assert definition_hash(user) != definition_hash(user.model_copy(update={"kind": Kind.SYSTEM_MANAGED}))


def test_curated_copy_shares_hash_with_user_copy() -> None:
    assert definition_hash(_defn(_doc(), curated=True)) == definition_hash(_defn(_doc()))


def test_hash_is_64_lowercase_hex() -> None:
    digest = _hash()
    assert re.fullmatch(r"[0-9a-f]{64}", digest), digest
    assert _build_hash(_files()) != digest


def test_image_name_is_prefix_and_first_32_hex() -> None:
    digest = _hash()
    assert image_name(digest) == "azureml/azureml_" + digest[:32]
    assert image_name(digest) != image_name(_hash(image=BASE + "x"))


def test_canonical_form_carries_scheme() -> None:
    form = canonical_form(_defn(_doc()))
    assert form["scheme"] == hashing.SCHEME
    bumped = hashlib.sha256(hashing.canonical_bytes({**form, "scheme": "envhub-hash/0"})).hexdigest()
    assert bumped != _hash()


def test_anonymous_image_version_is_stable() -> None:
    same = {"dependencies": list(CONDA["dependencies"]), "channels": list(CONDA["channels"]), "name": "project"}
    assert anonymous.image_version(BASE, CONDA, None) == anonymous.image_version(BASE, same, None)


def test_anonymous_image_version_follows_conda_order() -> None:
    deps = CONDA["dependencies"]
    swapped = {**CONDA, "dependencies": [deps[1], deps[0], deps[2]]}
    assert anonymous.image_version(BASE, swapped, None) != anonymous.image_version(BASE, CONDA, None)


def test_anonymous_version_ignores_name_and_version() -> None:
    first = anonymous.anonymous_version(_defn(_doc()))
    assert anonymous.anonymous_version(_defn(_doc(name="renamed", version="9"))) == first
    assert anonymous.anonymous_version(_defn(_doc(image=BASE + "x"))) != first
