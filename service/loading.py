"""Loads a registry version only if it holds what a pt2 model holds, so nothing from the registry runs here.

MLflow's own loader puts a version's `code/` folder on sys.path and imports the pickle module it
names before checking anything, and `torch.export.load` unpickles some records of a pt2 archive
with the full unpickler. So every file is checked here first, by name and by content, and the
program is then loaded by torch directly: MLflow only copies the two files that are needed.
"""

from __future__ import annotations

import io
import json
import math
import pickletools
import re
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from service.errors import ModelRefusedError, UntrustedModelError, first_line
from service.graph_call import Forward, forward_of
from service.predictor import PredictFn

PROGRAM = "data/model.pt2"
# What `mlflow.pytorch.log_model(..., serialization_format="pt2")` writes, and nothing else.
EXPECTED_FILES = frozenset(
    {
        "MLmodel",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "constraints.txt",
        "input_example.json",
        "serving_input_example.json",
        "registered_model_meta",  # written beside a local store's model by MLflow's models:/ downloads
        PROGRAM,
    }
)
# Globals that a tensor saved by torch.save refers to; a pickle naming any other is refused unread.
_TENSOR_GLOBALS = frozenset(
    {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict"}
    | {
        f"torch.{kind}Storage"
        for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
    }
)
_TEXT_RECORDS = frozenset({"version", "archive_format", "archive_version", "byteorder", "serialization_id"})
_TEXT_CONTENT = re.compile(rb"[A-Za-z0-9._-]{1,64}\n?")
_PAYLOAD_CONFIG = re.compile(r"(?:^|/)data/(?:weights|constants)/[^/]+_config\.json$")


def check_listing(paths: list[str]) -> None:
    """Refuse by file names alone, before anything is downloaded."""
    if any(p == "code" or p.startswith("code/") for p in paths):
        raise UntrustedModelError("it has a code/ folder (code_paths); code from the registry is never run")
    if "data/pickle_module_info.txt" in paths:
        raise UntrustedModelError("it names a pickle module (data/pickle_module_info.txt); pickled models are refused")
    if PROGRAM not in paths:
        other = [p for p in paths if p.startswith("data/")]
        if other:
            raise UntrustedModelError(
                f"it holds a pickled or other payload ({', '.join(other)}) instead of {PROGRAM}; "
                "only torch.export (pt2) programs are served"
            )
    if PROGRAM not in paths or "MLmodel" not in paths:  # still uploading, or part of the store is down
        missing = " and ".join(p for p in ("MLmodel", PROGRAM) if p not in paths)
        raise FileNotFoundError(f"its {missing} cannot be found (yet); retrying")
    unexpected = sorted(set(paths) - EXPECTED_FILES)
    if unexpected:
        raise UntrustedModelError(f"it holds files a pt2 model does not: {', '.join(unexpected)}")


@dataclass(frozen=True)
class Program:
    forward: Forward  # (N, 784) float32 tensor → its output tensor
    ood_threshold: float | None  # from the MLmodel's metadata; None: the program cannot abstain


def check_mlmodel(text: str) -> float | None:
    """The MLmodel must describe a pytorch flavour with no code and MLflow's default pickle module;
    returns its abstention threshold, if it has one."""
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UntrustedModelError(f"its MLmodel is not valid YAML: {first_line(err)}") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("pytorch"), dict):
        raise ModelRefusedError("its MLmodel has no pytorch flavour; only mlflow.pytorch pt2 models are served")
    for name, flavor in flavors.items():
        if isinstance(flavor, dict) and flavor.get("code"):
            raise UntrustedModelError(f"its MLmodel's {name} flavour names code ({flavor['code']}); none is run")
    pickle_module = flavors.get("python_function", {}).get("pickle_module_name", "mlflow.pytorch.pickle_module")
    if pickle_module != "mlflow.pytorch.pickle_module":
        raise UntrustedModelError(f"its MLmodel names the pickle module {pickle_module!r}; pickled models are refused")
    metadata = spec.get("metadata") or {}
    threshold = metadata.get("ood_threshold") if isinstance(metadata, dict) else None
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ModelRefusedError(f"its MLmodel's metadata ood_threshold must be a finite number, got {threshold!r}")
    return float(threshold)


# Opcodes that build objects other than through the allowed globals, or that reach outside the stream.
_FORBIDDEN_OPCODES = frozenset({"BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"})
# Records this service reads to check, beyond which a record is refused unread (raw tensors are not read).
MAX_CHECKED_RECORD_BYTES = 64 * 1024 * 1024


def _pickle_globals(stream: bytes) -> set[str]:
    """The module.name globals a pickle refers to, read without unpickling; raises ValueError for a
    stream that names a global it computes, or uses an opcode that builds other objects."""
    names: set[str] = set()
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in _FORBIDDEN_OPCODES:
            raise ValueError(f"opcode {opcode.name}")
        if opcode.name == "GLOBAL":
            names.add(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            if len(strings) < 2:
                raise ValueError("a STACK_GLOBAL whose name is computed")
            names.add(f"{strings[-2]}.{strings[-1]}")
            strings = []
        elif "UNICODE" in opcode.name or "STRING" in opcode.name:
            strings.append(str(arg))
        elif opcode.name not in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            strings = []
    return names


def _is_tensor_checkpoint(content: bytes) -> bool:
    """A torch.save archive, starting at its first byte, whose pickles build tensors and containers only.

    torch reads a stream that does not start with a zip header as a bare pickle, while Python's
    zipfile skips leading bytes: both must see the same archive."""
    if not content.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as checkpoint:
            members = checkpoint.infolist()
            if min(m.header_offset for m in members) != 0:  # bytes before the archive that torch would read
                return False
            pickles = [m for m in members if m.filename.endswith(".pkl")]
            return bool(pickles) and all(_pickle_globals(checkpoint.read(m)) <= _TENSOR_GLOBALS for m in pickles)
    except (zipfile.BadZipFile, ValueError):
        return False


def _payload_records(archive: zipfile.ZipFile) -> tuple[set[str], set[str]]:
    """(raw, pickled): records the payload configs have torch read as raw tensor bytes, and records
    it would unpickle. Constants that torch unpickles as arbitrary objects are refused outright."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for name in archive.namelist():
        if not _PAYLOAD_CONFIG.search(name):
            continue
        try:
            entries = json.loads(archive.read(name)).get("config", {})
        except (ValueError, AttributeError):
            raise UntrustedModelError(f"record {name!r} of {PROGRAM} is not a payload config") from None
        folder = name.rsplit("/", 1)[0]
        for entry in entries.values() if isinstance(entries, dict) else ():
            path = entry.get("path_name", "") if isinstance(entry, dict) else ""
            if "/" in path or not path.startswith(("weight_", "tensor_")):
                raise UntrustedModelError(
                    f"{name} of {PROGRAM} names {path!r}; only tensors are loaded, not custom or opaque objects"
                )
            (raw if entry.get("use_pickle") is False else pickled).add(f"{folder}/{path}")
    return raw - pickled, pickled


def _is_plain(name: str, content: bytes) -> bool:
    """JSON for .json records, a short text field for torch's few text records, else a tensor checkpoint."""
    if name.endswith(".json"):
        try:
            json.loads(content)
        except ValueError:
            return False
        return True
    if name.rsplit("/", 1)[-1] in _TEXT_RECORDS:
        return _TEXT_CONTENT.fullmatch(content) is not None
    return _is_tensor_checkpoint(content)


def check_program(path: Path) -> None:
    """Every record of the pt2 archive is JSON, a short text field, raw tensor bytes or a tensor checkpoint."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelRefusedError(f"{PROGRAM} is not a readable pt2 archive (corrupt or truncated: {err})") from None
    with archive:
        raw, _ = _payload_records(archive)
        for info in archive.infolist():
            if info.is_dir() or info.filename in raw:
                continue
            if info.file_size > MAX_CHECKED_RECORD_BYTES:
                raise UntrustedModelError(
                    f"record {info.filename!r} of {PROGRAM} holds {info.file_size} bytes; records other than "
                    f"raw tensors may hold at most {MAX_CHECKED_RECORD_BYTES}"
                )
            if not _is_plain(info.filename, archive.read(info)):
                raise UntrustedModelError(
                    f"record {info.filename!r} of {PROGRAM} is neither metadata nor tensor data "
                    "(pickled objects and compiled code are refused)"
                )


def _listing(store: ArtifactRepository) -> list[str]:
    """Every file's path relative to the model's root, folders walked."""
    paths: list[str] = []
    pending: list[str | None] = [None]
    while pending:
        for entry in store.list_artifacts(pending.pop()):
            (pending if entry.is_dir else paths).append(entry.path)
    return sorted(str(p) for p in paths)


# torch.export.load sets a module-wide deserializer while it runs: two at once (the served alias's
# follower and the shadow's, each on its own thread) fail with "_CURRENT_DESERIALIZER is already set".
_EXPORT_LOAD = threading.Lock()
# Images a program's direct call must answer exactly as torch's wrapper does before it is used.
_PROBE = np.random.default_rng(0).random((3, 784), dtype=np.float32)


def load_program(location: str, tracking_uri: str) -> Program:
    """Check the model files at `location` (a version's download URI) one by one, then load its pt2 program.

    Raises ModelRefusedError for what a retry cannot change; anything else (an unreachable
    registry or artifact store) is worth retrying."""
    store = get_artifact_repository(location, tracking_uri=tracking_uri)
    paths = _listing(store)
    if not paths:  # some stores list a missing folder as empty: a store that is down, not a bad version
        raise FileNotFoundError(f"no files found at {location}; the artifact store may be unreachable")
    check_listing(paths)
    with tempfile.TemporaryDirectory(prefix="mnist37-model-") as scratch:
        mlmodel = Path(store.download_artifacts("MLmodel", scratch))
        threshold = check_mlmodel(mlmodel.read_text(encoding="utf-8", errors="replace"))
        program = Path(store.download_artifacts(PROGRAM, scratch))
        check_program(program)
        try:
            with _EXPORT_LOAD:
                exported = torch.export.load(program)
            forward = forward_of(exported, torch.from_numpy(_PROBE))
        except Exception as err:
            raise ModelRefusedError(f"{PROGRAM} could not be loaded: {first_line(err)}") from None
    return Program(forward, threshold)


def load_predictor(location: str, tracking_uri: str) -> tuple[PredictFn, float | None]:
    """The checked pt2 program at `location` as a PredictFn, and its abstention threshold if it has one."""
    program = load_program(location, tracking_uri)
    forward = program.forward

    def predict(images: np.ndarray) -> np.ndarray:
        if not images.flags.writeable:  # decoded straight from the request buffer; torch wants writable memory
            images = images.copy()
        with torch.inference_mode():
            out: np.ndarray = forward(torch.from_numpy(images)).numpy()
        return out

    return predict, program.ood_threshold
