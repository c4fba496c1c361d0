"""The public surface: one curated `__init__` with a sorted `__all__`, every name documented."""

from __future__ import annotations

import inspect

import tiktok_async
import tiktok_async.emulator


def test_all_is_sorted_and_unique() -> None:
    assert list(tiktok_async.__all__) == sorted(set(tiktok_async.__all__))


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in tiktok_async.__all__:
        member = getattr(tiktok_async, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert inspect.getdoc(member), f"{name} has no docstring"


def test_public_members_are_exported() -> None:
    public = {
        name
        for name, member in vars(tiktok_async).items()
        if not name.startswith("_") and not inspect.ismodule(member)
    }
    assert public <= set(tiktok_async.__all__)


def test_emulator_all_is_sorted() -> None:
    assert list(tiktok_async.emulator.__all__) == sorted(set(tiktok_async.emulator.__all__))
