from tests.serving.conftest import data, local_model, served_store, server  # noqa: F401
