"""The Azure home's emulators for integration tests: started on free ports, skipped locally (failed in CI) when
`make emulators` has not installed them."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from shared.adapters.azurite import Azurite, AzuriteNotInstalled
from shared.adapters.cosmos_emulator import CosmosEmulator, CosmosEmulatorNotInstalled
from tests.support import unavailable


def azurite_or_skip(stack: ExitStack, data_dir: Path | None = None) -> Azurite:
    """Azurite's blob and queue services until `stack` closes (kept in `data_dir` when given)."""
    try:
        return stack.enter_context(Azurite(data_dir=data_dir))
    except AzuriteNotInstalled as error:
        unavailable(str(error))


def cosmos_or_skip(stack: ExitStack) -> CosmosEmulator:
    """The Cosmos DB server until `stack` closes."""
    try:
        return stack.enter_context(CosmosEmulator())
    except CosmosEmulatorNotInstalled as error:
        unavailable(str(error))


def azure_env(azurite: Azurite, cosmos: CosmosEmulator, database: str) -> dict[str, str]:
    """ENVHUB_* settings that put the store, contexts and queue on the emulators (builds stay on buildah)."""
    return {"ENVHUB_STORE": "cosmos", "ENVHUB_COSMOS_ENDPOINT": cosmos.endpoint, "ENVHUB_COSMOS_KEY": cosmos.key,
            "ENVHUB_COSMOS_DATABASE": database, "ENVHUB_COSMOS_CREATE": "true", "ENVHUB_CONTEXTS": "blob",
            "ENVHUB_QUEUE": "storage", "ENVHUB_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "ENVHUB_STORAGE_CREATE": "true"}
