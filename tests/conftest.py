import pytest


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """``get(name, exporter, keep_bn) -> path`` of a zoo model exported once per test session.

    A dynamo request exports both keep_bn variants from one trace (see ``models.export_variants``).
    """
    from onnxprune import models

    out_dir = tmp_path_factory.mktemp("zoo")
    cache: dict[tuple[str, str, bool], str] = {}

    def get(name: str, exporter: str = "torchscript", keep_bn: bool = True) -> str:
        key = (name, exporter, bool(keep_bn))
        if key not in cache:
            variants = (True, False) if exporter == "dynamo" else (bool(keep_bn),)
            for (e, kb), path in models.export_variants(name, out_dir, (exporter,), variants).items():
                cache[(name, e, kb)] = path
        return cache[key]

    return get
