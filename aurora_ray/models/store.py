"""The model store: artifacts under ``<warehouse_uri>/models/<tenant>/<version>/model.ubj``.

Through pyarrow's filesystems, so a local folder and ``s3://…`` work the same. A local
``warehouse_uri`` is made absolute, so the URI recorded in the registry is readable from any
working directory (a Ray worker's is not the CLI's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pyarrow import fs as pafs

__all__ = ["ARTIFACT_NAME", "ModelStore", "read_artifact"]

ARTIFACT_NAME: Final = "model.ubj"


def _root(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).resolve())


def read_artifact(uri: str) -> bytes:
    filesystem, path = pafs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return bytes(stream.read())


class ModelStore:
    def __init__(self, warehouse_uri: str) -> None:
        self.root = _root(warehouse_uri).rstrip("/")

    def uri_for(self, tenant_id: str, version: str) -> str:
        return f"{self.root}/models/{tenant_id}/{version}/{ARTIFACT_NAME}"

    def write(self, tenant_id: str, version: str, data: bytes) -> str:
        """Write the artifact (whole, then renamed into place where the filesystem allows)."""
        uri = self.uri_for(tenant_id, version)
        filesystem, path = pafs.FileSystem.from_uri(uri)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
        return uri

    def read(self, uri: str) -> bytes:
        return read_artifact(uri)
