import pytest


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """``get(name) -> models.trained.TrainedModel``, trained and exported once per test session."""
    from onnxprune.models import trained

    out_dir = tmp_path_factory.mktemp("trained")
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = trained.train(name, out_dir)
        return cache[name]

    return get
