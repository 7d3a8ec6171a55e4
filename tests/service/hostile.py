"""Registry versions made to attack the service, each from a copy of a good version's files.

Each payload, if it ever runs, writes a marker file and starts a thread named PAYLOAD_THREAD, so
a test can tell afterwards whether anything from the registry was executed.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from mlflow import MlflowClient

MODEL = "mnist-3v7"
PAYLOAD_THREAD = "mnist37-payload"


def payload_source(marker: Path) -> str:
    return (
        "import pathlib, threading, time\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        f"threading.Thread(target=time.sleep, args=(600,), name={PAYLOAD_THREAD!r}, daemon=True).start()\n"
    )


class _Exec:
    """Unpickles into exec(source): what a hostile torch.save payload does."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (self.source,)


def _edit_mlmodel(folder: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    edit(spec)
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))


def pickled_with_code(folder: Path, marker: Path) -> None:
    """What `log_model(..., serialization_format="pickle", code_paths=["payload.py"], pickle_module=payload)`
    writes: MLflow's loader would import `payload` from code/ before checking for pickles."""
    (folder / "data" / "model.pt2").unlink()
    (folder / "code").mkdir()
    (folder / "code" / "payload.py").write_text(payload_source(marker))
    (folder / "data" / "pickle_module_info.txt").write_text("payload")
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(_Exec(payload_source(marker))))

    def edit(spec: dict) -> None:  # type: ignore[type-arg]
        spec["flavors"]["pytorch"]["code"] = "code"
        spec["flavors"]["python_function"].update(code="code", pickle_module_name="payload")

    _edit_mlmodel(folder, edit)


def pt2_with_code(folder: Path, marker: Path) -> None:
    """A genuine pt2 program with a code/ folder that MLflow's loader would put on sys.path."""
    (folder / "code").mkdir()
    (folder / "code" / "payload.py").write_text(payload_source(marker))
    _edit_mlmodel(folder, lambda spec: spec["flavors"]["pytorch"].update(code="code"))


def pickled_sample_inputs(folder: Path, marker: Path) -> None:
    """A pt2 archive whose sample inputs are a pickle that torch.export.load would unpickle."""
    checkpoint = io.BytesIO()
    with zipfile.ZipFile(checkpoint, "w") as inner:
        inner.writestr("archive/data.pkl", pickle.dumps(_Exec(payload_source(marker)), protocol=2))
        inner.writestr("archive/version", "3\n")
    _rewrite_program(folder, {"model/data/sample_inputs/model.pt": checkpoint.getvalue()})


def _tensor_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save((torch.zeros(1, 784),), buffer)
    return buffer.getvalue()


def polyglot_sample_inputs(folder: Path, marker: Path) -> None:
    """Sample inputs that are a pickle followed by a genuine tensor checkpoint: Python's zipfile sees
    the checkpoint, torch sees the pickle at byte 0."""
    evil = pickle.dumps(_Exec(payload_source(marker)), protocol=2)
    _rewrite_program(folder, {"model/data/sample_inputs/model.pt": evil + _tensor_checkpoint()})


def _add_pickled_payload(folder: Path, marker: Path, kind: str, path_name: str) -> None:
    """Name `path_name` in the weights or constants config as a record to unpickle, and make it a payload."""
    config = f"model/data/{kind}/model_{kind}_config.json"
    with zipfile.ZipFile(folder / "data" / "model.pt2") as archive:
        spec = json.loads(archive.read(config))
    spec["config"]["evil"] = {"path_name": path_name, "use_pickle": True}
    _rewrite_program(
        folder,
        {
            config: json.dumps(spec).encode(),
            f"model/data/{kind}/{path_name}": pickle.dumps(_Exec(payload_source(marker)), protocol=2),
        },
    )


def raw_and_pickled_weight(folder: Path, marker: Path) -> None:
    """One weight record named twice in the weights config: once raw, once to be unpickled."""
    _add_pickled_payload(folder, marker, "weights", "weight_0")


def opaque_constant(folder: Path, marker: Path) -> None:
    """A constant that torch would hand to pickle.loads as an arbitrary object."""
    _add_pickled_payload(folder, marker, "constants", "opaque_obj_0")


def extra_file(folder: Path, marker: Path) -> None:
    """A genuine pt2 model with one more file beside it."""
    (folder / "data" / "helper.py").write_text(payload_source(marker))


def corrupt_program(folder: Path, marker: Path) -> None:
    """A truncated model.pt2."""
    program = folder / "data" / "model.pt2"
    program.write_bytes(program.read_bytes()[:1000])


def _rewrite_program(folder: Path, replacements: dict[str, bytes]) -> None:
    program = folder / "data" / "model.pt2"
    with zipfile.ZipFile(program) as old:
        records = {info.filename: old.read(info) for info in old.infolist()}
    records.update(replacements)
    with zipfile.ZipFile(program, "w") as new:
        for name, content in records.items():
            new.writestr(name, content)


HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    # kind → (how to make it, what the refusal says)
    "pickled_with_code": (pickled_with_code, "code/ folder"),
    "pt2_with_code": (pt2_with_code, "code/ folder"),
    "pickled_sample_inputs": (pickled_sample_inputs, "neither metadata nor tensor data"),
    "polyglot_sample_inputs": (polyglot_sample_inputs, "neither metadata nor tensor data"),
    "raw_and_pickled_weight": (raw_and_pickled_weight, "neither metadata nor tensor data"),
    "opaque_constant": (opaque_constant, "only tensors are loaded, not custom or opaque objects"),
    "extra_file": (extra_file, "files a pt2 model does not: data/helper.py"),
    "corrupt_program": (corrupt_program, "not a readable pt2 archive"),
}


def model_files(uri: str, version: str, into: Path) -> Path:
    """A copy of a version's model folder (the stores in tests keep artifacts on local disk)."""
    client = MlflowClient(uri, uri)
    source = Path(client.get_model_version_download_uri(MODEL, version).removeprefix("file://"))
    return Path(shutil.copytree(source, into))


def register_folder(uri: str, folder: Path, recipe: str) -> str:
    """Log `folder` as a run's model artifacts and register it as a new version, as anyone with
    write access to the registry can."""
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("mnist37")
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, run_name=recipe)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    source = f"runs:/{run.info.run_id}/model"
    return str(client.create_model_version(MODEL, source, run_id=run.info.run_id, tags={"recipe": recipe}).version)


def register_hostile(uri: str, good_version: str, kind: str, workdir: Path, marker: Path) -> str:
    folder = model_files(uri, good_version, workdir / kind)
    HOSTILE[kind][0](folder, marker)
    return register_folder(uri, folder, kind)
