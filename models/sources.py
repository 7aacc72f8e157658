"""Where a campaign's network comes from, and loading it: a fi-campaign checkpoint (``zoo:NAME``
or a path), a TorchScript file, a ``torch.export`` program (``.pt2``), or the user's own build
function (``FILE.py:FUNCTION`` or ``package.module:FUNCTION``) with optional weights.

Building runs the user's code, which the user asked for by naming it; loading weights never runs
code (``.safetensors``, or ``torch.load(weights_only=True)``). A build is called under a fixed
torch seed, so a network whose weights come from its own initialisation is the same network in
every process that builds it. What was loaded is recorded (``SourceRecord``: the files and their
sha256) so a campaign refuses to run against changed files.

PyTorch refuses forward hooks on script modules, so a TorchScript program is edited to pass each
module's output through a hookable placeholder (``models.script_taps``); an exported program is
unflattened back into its module tree (``torch.export.unflatten``), whose submodules run as
modules and can be hooked.

Importing this module imports no torch: the config builds ``ModelSource`` records before
anything heavy is loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fi_campaign.errors import UserError
from fi_campaign.models.formats import DTYPES, FLOAT32

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fi_campaign.models.zoo import Meta

CHECKPOINT, TORCHSCRIPT, EXPORT, BUILD = "checkpoint", "torchscript", "export", "build"
KINDS = (CHECKPOINT, TORCHSCRIPT, EXPORT, BUILD)
BUILD_SEED = 0  # the torch seed a build function is called under
# FILE.py:FUNCTION (a path, may hold ':' only as a Windows drive, which fi-campaign does not
# target) or package.module:FUNCTION
FILE_FUNCTION = re.compile(r"(?P<file>[^:\0]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")
MODULE_FUNCTION = re.compile(
    r"(?P<module>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*):(?P<function>[A-Za-z_][A-Za-z0-9_]*)"
)
SHOWN_KEYS = 3  # weights that do not fit: how many key names a message shows


class SourceError(UserError):
    """A network that cannot be built or loaded; one sentence naming the config key."""


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """A network the config names by a mapping: ``build`` (FILE.py:FUNCTION or
    package.module:FUNCTION) called with ``args`` as keywords, then ``weights`` loaded into it."""

    build: str
    args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    dtype: str = "float32"

    def spelt(self) -> dict[str, Any]:
        """The mapping as a config spells it (what the stored config JSON holds)."""
        out: dict[str, Any] = {"build": self.build}
        if self.args:
            out["args"] = dict(self.args)
        if self.weights is not None:
            out["weights"] = self.weights
        if self.dtype != "float32":
            out["dtype"] = self.dtype
        return out


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A network the config names by a mapping with ``checkpoint`` (what a string names:
    ``zoo:NAME``, a fi-campaign checkpoint, a TorchScript or exported file) and the ``dtype``
    it runs in."""

    checkpoint: str
    dtype: str = FLOAT32

    def spelt(self) -> dict[str, Any]:
        """The mapping as a config spells it (what the stored config JSON holds)."""
        return {"checkpoint": self.checkpoint} | ({"dtype": self.dtype} if self.dtype != FLOAT32 else {})


def dtype_of(ref: str | Checkpoint | ModelSource) -> str:
    """The dtype a config's model runs in (a string: float32, as before dtypes existed)."""
    return FLOAT32 if isinstance(ref, str) else ref.dtype


def named(ref: str | Checkpoint | ModelSource) -> str | ModelSource:
    """What loads the network: a checkpoint mapping's string, or a build mapping."""
    return ref.checkpoint if isinstance(ref, Checkpoint) else ref


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """What a campaign loaded for a network that is not a fi-campaign checkpoint: the kind, the
    files with their sha256 (absolute paths, so any process can load them again), the build's
    arguments and the dtype. ``root`` is the folder put on ``sys.path`` while a build imports."""

    kind: str  # torchscript | export | build
    ref: str  # as the config gave it: the file, or the build's FILE.py:FUNCTION / package.module:FUNCTION
    file: str  # absolute path: the TorchScript or .pt2 file, or the file defining the build function
    file_sha256: str
    function: str | None = None  # build: the function's name
    module: str | None = None  # build from package.module:FUNCTION: the module's name
    root: str | None = None  # build: the folder put first on sys.path while importing
    args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # absolute path
    weights_sha256: str | None = None
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "file": self.file,
            "file_sha256": self.file_sha256,
            "function": self.function,
            "module": self.module,
            "root": self.root,
            "args": dict(self.args),
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceRecord:
        return cls(
            kind=d["kind"],
            ref=d["ref"],
            file=d["file"],
            file_sha256=d["file_sha256"],
            function=d.get("function"),
            module=d.get("module"),
            root=d.get("root"),
            args=dict(d.get("args") or {}),
            weights=d.get("weights"),
            weights_sha256=d.get("weights_sha256"),
            dtype=d.get("dtype", "float32"),
        )


@dataclass
class Loaded:
    """A network ready to run (eval mode, in its dtype, on its device) and what identifies it.
    ``types``: each submodule's class name where the module tree lost it (an exported or
    converted program runs its submodules as generic modules); empty otherwise."""

    model: nn.Module
    sha256: str  # of the weights (models.zoo.weights_digest of its state_dict)
    source: SourceRecord | None  # None: a fi-campaign checkpoint
    meta: Meta | None = None  # a fi-campaign checkpoint's metadata
    types: dict[str, str] = field(default_factory=dict)
    dtype: str = FLOAT32  # what it runs in


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_kind(path: Path) -> str:
    """checkpoint, torchscript or export for a model file named by a string: a ``.pt2`` is an
    exported program, a zip archive holding TorchScript code is TorchScript, anything else is
    read as a fi-campaign checkpoint (whose loader says what is wrong with it)."""
    if path.suffix.lower() == ".pt2":
        return EXPORT
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                return TORCHSCRIPT
    except (OSError, zipfile.BadZipFile):
        pass
    return CHECKPOINT


def ref_kind(ref: str) -> str:
    """What a model string names: a fi-campaign checkpoint (zoo:NAME, a missing path, any file
    that is neither of the others), a TorchScript file or an exported program."""
    from fi_campaign.models.zoo import ZOO_PREFIX

    if ref.startswith(ZOO_PREFIX):
        return CHECKPOINT
    path = Path(ref).expanduser()
    try:
        return file_kind(path) if path.is_file() else CHECKPOINT
    except OSError:
        return CHECKPOINT


def load(source: str | ModelSource, key: str, device: str = "cpu", dtype: str = FLOAT32) -> Loaded:
    """The network ``source`` names, loaded in eval mode, in ``dtype`` (a build mapping's own).
    ``key`` is its config key (``models.NAME``), which every refusal names."""
    if isinstance(source, ModelSource):
        return _built(source, key, device)
    from fi_campaign.models import zoo

    if source.startswith(zoo.ZOO_PREFIX):
        return _checkpoint(source, device, dtype)
    path = Path(source).expanduser()
    try:
        exists = path.is_file()
    except OSError as e:
        raise SourceError(f"{key}: cannot read {source} ({e.strerror}).") from None
    if not exists:
        return _checkpoint(source, device, dtype)  # says the checkpoint does not exist, as before
    kind = file_kind(path)
    if kind == CHECKPOINT:
        return _checkpoint(source, device, dtype)
    return _program(kind, source, path.resolve(), key, device, dtype)


def load_recorded(record: SourceRecord, key: str, device: str = "cpu") -> Loaded:
    """The network a campaign recorded, from the files it recorded, refusing any that changed."""
    check_files(record, key)
    if record.kind == BUILD:
        return _call_build(record, key, device)
    return _program(record.kind, record.ref, Path(record.file), key, device, record.dtype)


def check_files(record: SourceRecord, key: str) -> None:
    """Refuse a recorded source whose files are gone or changed since the plan."""
    for path, digest, what in (
        (record.file, record.file_sha256, "file"),
        (record.weights, record.weights_sha256, "weights file"),
    ):
        if path is None:
            continue
        try:
            found = sha256_of(Path(path))
        except OSError as e:
            raise SourceError(
                f"{key}: the {what} {path} the campaign was planned with cannot be read ({e.strerror}); restore it."
            ) from None
        if found != digest:
            raise SourceError(
                f"{key}: {path} has changed since the campaign was planned (sha256 differs); "
                "restore it or plan a new campaign."
            )


def _checkpoint(ref: str, device: str, dtype: str = FLOAT32) -> Loaded:
    """A fi-campaign checkpoint; ``sha256`` is that of its stored (float32) weights, before the cast."""
    from fi_campaign.models import zoo

    model, meta = zoo.load(ref, device=device)
    return Loaded(model=in_dtype(model, dtype), sha256=meta.sha256, source=None, meta=meta, dtype=dtype)


def torch_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise SourceError(f"dtype {dtype!r} is none of {', '.join(DTYPES)}.")
    dt: torch.dtype = getattr(torch, dtype)
    return dt


def in_dtype(model: nn.Module, dtype: str) -> nn.Module:
    """The network's floating-point parameters and buffers cast to ``dtype``."""
    return model.to(dtype=torch_dtype(dtype))


def _finish(model: nn.Module, key: str, device: str, dtype: str = FLOAT32) -> nn.Module:
    """In the campaign's dtype, eval mode, on the device."""
    try:
        return model.to(device=device, dtype=torch_dtype(dtype)).eval()
    except RuntimeError as e:
        raise SourceError(f"{key}: the network cannot be moved to {device} ({first_line(e)}).") from None


def _digest(model: nn.Module) -> str:
    from fi_campaign.models import zoo

    return zoo.weights_digest(model.state_dict())


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


# --- TorchScript and exported programs ----------------------------------------------------------


def _program(kind: str, ref: str, path: Path, key: str, device: str, dtype: str = FLOAT32) -> Loaded:
    import torch

    record = SourceRecord(kind=kind, ref=ref, file=str(path), file_sha256=sha256_of(path), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == TORCHSCRIPT:
            from fi_campaign.models.script_taps import ScriptNetwork

            try:
                script = torch.jit.load(str(path), map_location="cpu")
            except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file that is no TorchScript
                raise SourceError(f"{key}: {ref} is not a TorchScript file ({first_line(e)}).") from None
            net = ScriptNetwork(script)
            model = _finish(net, key, device, dtype)
            return Loaded(model=model, sha256=_digest(script), source=record, types=net.types, dtype=dtype)
        if not zipfile.is_zipfile(path):
            raise SourceError(
                f"{key}: {ref} is not a torch.export program (it is no archive torch.export.save writes)."
            )
        try:
            with _quiet("torch.export"):  # torch logs a traceback before raising
                program = torch.export.load(str(path))
        except Exception as e:  # noqa: BLE001 - the same for a file that is no exported program
            raise SourceError(f"{key}: {ref} is not a torch.export program ({first_line(e)}).") from None
        try:
            unflat: nn.Module = torch.export.unflatten(program)
        except Exception as e:  # noqa: BLE001
            raise SourceError(f"{key}: {ref} cannot be run module by module ({first_line(e)}).") from None
    model = _finish(unflat, key, device, dtype)
    return Loaded(model=model, sha256=_digest(model), source=record, types=_exported_types(program), dtype=dtype)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _exported_types(program: Any) -> dict[str, str]:
    """Each submodule's original class name, from the module stack every node of an exported
    graph carries."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            name = path if isinstance(path, str) else ""
            if name and name not in types:
                types[name] = str(cls).rsplit(".", 1)[-1].rstrip("'>")
    return types


# --- build functions ------------------------------------------------------------------------------


def _built(source: ModelSource, key: str, device: str) -> Loaded:
    """Resolve the build and weights files named in the config, then build as a recorded source."""
    record = SourceRecord(kind=BUILD, ref=source.build, file="", file_sha256="", args=dict(source.args))
    m = FILE_FUNCTION.fullmatch(source.build)
    if m is not None:
        file = Path(m["file"]).expanduser()
        if not file.is_file():
            raise SourceError(f"{key}.build: {file} does not exist.")
        file = file.resolve()
        record = _with(record, file=str(file), function=m["function"], root=str(file.parent))
    else:
        m = MODULE_FUNCTION.fullmatch(source.build)
        if m is None:
            raise SourceError(
                f"{key}.build is {source.build!r}; it must be FILE.py:FUNCTION or package.module:FUNCTION."
            )
        module = _import_module(m["module"], key, Path.cwd())
        found = getattr(module, "__file__", None)
        if found is None:
            raise SourceError(f"{key}.build: module {m['module']} has no file to record.")
        file = Path(found).resolve()
        # the folder the module's top-level package sits in, so any process can import it again
        root = file.parents[m["module"].count(".") + (file.name == "__init__.py")]
        record = _with(record, file=str(file), function=m["function"], module=m["module"], root=str(root))
    record = _with(record, file_sha256=sha256_of(Path(record.file)), dtype=source.dtype)
    if source.weights is not None:
        weights = Path(source.weights).expanduser()
        if not weights.is_file():
            raise SourceError(f"{key}.weights: {weights} does not exist.")
        weights = weights.resolve()
        record = _with(record, weights=str(weights), weights_sha256=sha256_of(weights))
    return _call_build(record, key, device)


def _with(record: SourceRecord, **changes: Any) -> SourceRecord:
    from dataclasses import replace

    return replace(record, **changes)


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on sys.path while a build imports, so it can import its own packages."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


def _import_module(name: str, key: str, root: Path) -> Any:
    try:
        with _on_path(root):
            return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):
            raise SourceError(f"{key}.build: no module named {name} can be imported.") from None
        raise SourceError(f"{key}.build: importing {name} failed ({first_line(e)}).") from None
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything while importing
        raise SourceError(f"{key}.build: importing {name} failed ({first_line(e)}).") from None


def _import_file(file: Path, key: str) -> Any:
    """The build file as a module of its own name, its folder on sys.path while it imports."""
    name = f"_fi_campaign_build_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}_{file.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SourceError(f"{key}.build: {file} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_path(file.parent):
            spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if not isinstance(e, Exception):
            raise
        raise SourceError(f"{key}.build: importing {file} failed ({first_line(e)}).") from None
    return module


def import_function(ref: str, key: str) -> Callable[..., Any]:
    """The function ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` names (a judge, an
    inputs function), imported as a build is."""
    m = FILE_FUNCTION.fullmatch(ref)
    if m is not None:
        file = Path(m["file"]).expanduser()
        if not file.is_file():
            raise SourceError(f"{key}: {file} does not exist.")
        module = _import_file(file.resolve(), key)
    else:
        m = MODULE_FUNCTION.fullmatch(ref)
        if m is None:
            raise SourceError(f"{key} is {ref!r}; it must be FILE.py:FUNCTION or package.module:FUNCTION.")
        module = _import_module(m["module"], key, Path.cwd())
    fn = getattr(module, m["function"], None)
    if not callable(fn):
        raise SourceError(f"{key}: {ref.rpartition(':')[0]} defines no function {m['function']}.")
    return fn


def _call_build(record: SourceRecord, key: str, device: str) -> Loaded:
    import torch
    from torch import nn

    where = f"{key}.build"
    if record.module is not None:
        assert record.root is not None, "a module build records the folder it was imported from"
        module = _import_module(record.module, key, Path(record.root))
    else:
        module = _import_file(Path(record.file), key)
    fn = getattr(module, record.function or "", None)
    if not callable(fn):
        raise SourceError(f"{where}: {record.file} defines no function {record.function}.")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED)
            model = fn(**record.args)
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise SourceError(f"{where}: {record.function}({_args(record.args)}) raised {first_line(e)}.") from None
    if not isinstance(model, nn.Module):
        raise SourceError(f"{where}: {record.function} returned a {type(model).__name__}, not a torch.nn.Module.")
    if record.weights is not None:
        _load_weights(model, Path(record.weights), f"{key}.weights")
    model = _finish(model, key, device, record.dtype)
    return Loaded(model=model, sha256=_digest(model), source=record, dtype=record.dtype)


def _args(args: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _load_weights(model: nn.Module, path: Path, key: str) -> None:
    """A state_dict from ``.safetensors`` or a weights-only torch file, refused unless it fits
    the network exactly (no missing or unexpected keys, every shape equal)."""
    state = read_state_dict(path, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} ({_shape(state[k])} in the file, {_shape(own[k])} in the network)"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{what} {_few(keys)}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes:", shapes))
        if keys
    ]
    if problems:
        raise SourceError(f"{key}: {path} does not fit the network: {'; '.join(problems)}.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SourceError(f"{key}: {path} does not fit the network ({first_line(e)}).") from None


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """Named tensors from a ``.safetensors`` file or a torch file loaded with
    ``weights_only=True`` (a plain state_dict, or a mapping holding one under ``state_dict``)."""
    import torch

    from fi_campaign.models.zoo import refused_global

    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise SourceError(
                f"{key}: reading {path} needs the safetensors package (pip install safetensors)."
            ) from None
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways
            raise SourceError(f"{key}: {path} is not a readable safetensors file ({first_line(e)}).") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file it will not load
        why = refused_global(e) or f"it is not a file PyTorch loads without running code ({first_line(e)})"
        raise SourceError(f"{key}: {path} was not loaded: {why}.") from None
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    if not (
        isinstance(blob, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items())
    ):
        raise SourceError(f"{key}: {path} holds a {type(blob).__name__}, not a state_dict of named tensors.")
    return blob
