"""The loading rules: a version's files are checked before anything of it is imported or unpickled."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from service.errors import ModelRefusedError, UntrustedModelError
from service.loading import _pickle_globals, check_listing, check_mlmodel, load_program
from tests.service.conftest import Registry
from tests.service.hostile import HOSTILE, PAYLOAD_THREAD, _Exec, model_files

pytestmark = pytest.mark.slow  # needs the registry's trained versions


def test_a_genuine_version_loads_and_answers_like_the_trainer_exported_it(registry: Registry, tmp_path: Path) -> None:
    folder = model_files(registry.uri, registry.good, tmp_path / "good")
    loaded = load_program(str(folder), registry.uri)
    assert loaded.ood_threshold is None  # the trainer's versions do not abstain yet
    program = loaded.forward
    reference = torch.export.load(folder / "data" / "model.pt2").module()
    images = torch.from_numpy(np.random.default_rng(0).random((5, 784), dtype=np.float32))
    with torch.inference_mode():
        assert torch.equal(program(images), reference(images))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_each_hostile_version_is_refused_and_nothing_of_it_runs(registry: Registry, tmp_path: Path, kind: str) -> None:
    make, needle = HOSTILE[kind]
    folder = model_files(registry.uri, registry.good, tmp_path / kind)
    marker = tmp_path / "ran"
    make(folder, marker)
    with pytest.raises(ModelRefusedError, match=needle):
        load_program(str(folder), registry.uri)
    assert not marker.exists()
    assert PAYLOAD_THREAD not in {t.name for t in threading.enumerate()}


def test_listing_rules_name_what_they_refuse() -> None:
    good = ["MLmodel", "conda.yaml", "data/model.pt2", "python_env.yaml", "requirements.txt"]
    check_listing(good)
    check_listing([*good, "registered_model_meta"])  # MLflow adds it when anyone loads models:/ from a local store
    for paths, needle in [
        ([*good, "code/x.py"], "code/ folder"),
        ([*good, "data/pickle_module_info.txt"], "names a pickle module"),
        (["MLmodel", "data/model.pth"], "a pickled or other payload (data/model.pth)"),
        ([*good, "notes.txt"], "files a pt2 model does not: notes.txt"),
    ]:
        with pytest.raises(UntrustedModelError, match=None) as err:
            check_listing(paths)
        assert needle in str(err.value)


def test_a_version_missing_its_program_or_mlmodel_is_retried_not_refused() -> None:
    for paths in (["MLmodel"], ["data/model.pt2"], ["MLmodel", "requirements.txt"]):
        with pytest.raises(FileNotFoundError, match="cannot be found"):  # an upload in progress, a store half down
            check_listing(paths)


def test_records_are_size_checked_before_they_are_read(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.service.hostile import _rewrite_program

    folder = model_files(registry.uri, registry.good, tmp_path / "big")
    _rewrite_program(folder, {"model/extra.json": b"[" + b"0," * 600_000 + b"0]"})
    monkeypatch.setattr("service.loading.MAX_CHECKED_RECORD_BYTES", 1_000_000)
    with pytest.raises(UntrustedModelError, match=r"'model/extra\.json' of data/model\.pt2 holds 1200003 bytes"):
        load_program(str(folder), registry.uri)


def test_mlmodel_rules() -> None:
    assert check_mlmodel("flavors:\n  pytorch: {code: null, model_data: data}\n") is None
    assert check_mlmodel("flavors:\n  pytorch: {}\nmetadata: {ood_threshold: 2.5}\n") == 2.5
    for text, needle in [
        ("flavors:\n  pytorch: {code: code}\n", "names code"),
        ("flavors:\n  python_function: {code: src}\n  pytorch: {}\n", "names code"),
        ("flavors:\n  pytorch: {}\n  python_function: {pickle_module_name: evil}\n", "pickle module 'evil'"),
        ("flavors:\n  sklearn: {}\n", "no pytorch flavour"),
        ("flavors: [\n", "not valid YAML"),
        ("flavors:\n  pytorch: {}\nmetadata: {ood_threshold: .nan}\n", "must be a finite number"),
        ("flavors:\n  pytorch: {}\nmetadata: {ood_threshold: high}\n", "must be a finite number"),
    ]:
        with pytest.raises(ModelRefusedError, match=None) as err:
            check_mlmodel(text)
        assert needle in str(err.value)


def test_pickle_globals_are_read_without_unpickling() -> None:
    assert _pickle_globals(pickle.dumps(_Exec("raise SystemExit"), protocol=2)) == {"__builtin__.exec"}  # Python 2 name
    assert _pickle_globals(pickle.dumps(_Exec("raise SystemExit"), protocol=4)) == {"builtins.exec"}
    assert _pickle_globals(pickle.dumps({"a": [1, 2.0]}, protocol=4)) == set()
    with pytest.raises(ValueError, match="BUILD"):  # objects built other than through allowed calls
        _pickle_globals(b"(dp0\n(dp1\nb.")
