"""pytest plugin (entry point `pytest11`): the emulator as fixtures.

- `tiktok_emulator`: a running `Emulator` with the default config (function scope).
- `tiktok_emulator_factory`: an async callable `make(config=None, **fields)` that starts an
  emulator with its own config; every one made is closed after the test.

```python
async def test_my_code(tiktok_emulator):
    result = await my_fetch(tiktok_emulator.base_url, tiktok_emulator.api_key)
    assert tiktok_emulator.stats().count(status=200) == 1
```

The fixtures are async, so they need pytest-asyncio (in auto mode, or mark the test
`@pytest.mark.asyncio`). Without pytest-asyncio the plugin still loads and the fixtures
fail with a message saying so. Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._config import EmulatorConfig
    from ._emulator import Emulator

    Factory = Callable[..., Awaitable[Emulator]]


def _async_fixture_decorator() -> Any:
    """`pytest_asyncio.fixture`, or None when pytest-asyncio is not installed."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - pytest-asyncio is in our dev extra
        return None
    return pytest_asyncio.fixture


_NEEDS = "the tiktok_emulator fixtures need pytest-asyncio: pip install pytest-asyncio"


async def _emulator() -> AsyncIterator[Emulator]:
    from ._emulator import Emulator

    async with Emulator() as emulator:
        yield emulator


async def _factory() -> AsyncIterator[Factory]:
    from ._emulator import Emulator

    started: list[Emulator] = []

    async def make(config: EmulatorConfig | None = None, **fields: Any) -> Emulator:
        emulator = Emulator(config, **fields)
        await emulator.start()
        started.append(emulator)
        return emulator

    try:
        yield make
    finally:
        for emulator in reversed(started):
            await emulator.close()


_fixture = _async_fixture_decorator()
if _fixture is not None:
    tiktok_emulator = _fixture(_emulator, name="tiktok_emulator")
    tiktok_emulator_factory = _fixture(_factory, name="tiktok_emulator_factory")
else:  # pragma: no cover

    @pytest.fixture(name="tiktok_emulator")
    def _no_emulator() -> None:
        pytest.fail(_NEEDS)

    @pytest.fixture(name="tiktok_emulator_factory")
    def _no_factory() -> None:
        pytest.fail(_NEEDS)
