from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A file or folder of the shared data copies beside the checkout (``../shared/data``), or
    a skip naming what is missing: a fresh clone elsewhere still runs every other test."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data copies in ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two real ResNet-20 checkpoints (seeded initialisations): a vanilla and a hardened one."""
    import torch

    from fi_campaign.models import zoo
    from fi_campaign.models.resnet import Arch, build

    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, act, order in (("baseline", "relu", "conv-bn-act"), ("hardened", "relu6", "conv-act-bn")):
        torch.manual_seed(1)
        model = build(Arch(20, act, order))
        out[name] = folder / f"{name}.pt"
        zoo.save(out[name], model, zoo.Meta(model.arch, "cifar10"))
    return out


@pytest.fixture
def tiny_config(tmp_path, checkpoints) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "seed": 11,
                "injections": 40,
                "batch_size": 32,
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 20, "seed": 3},
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the whole session (tests/servers.py), stopped afterwards,
    also when the session is ended by SIGTERM (a timeout), which pytest would not tear down."""
    import signal

    from tests.servers import Postgres, missing

    try:
        server = Postgres.start()
    except FileNotFoundError as e:
        missing(str(e))
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield server
    finally:
        signal.signal(signal.SIGTERM, before)
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_store(request, backend, tmp_path, monkeypatch):
    """new_store(name) -> where a fresh store of this test's backend goes: a file path, or the URL
    of a new database on the session's server (whose beside-files then go in tmp_path)."""
    if backend == "sqlite":
        return lambda name="s": str(tmp_path / f"{name}.db")
    server = request.getfixturevalue("postgres")
    monkeypatch.chdir(tmp_path)
    return lambda name="s": server.create(name)
