"""Transfer settings from `POLLAMA_PULL_*` variables: defaults, values, and a clear error for a bad one."""

from __future__ import annotations

import pytest

from server.config import ConfigError
from server.registry.settings import TransferSettings


def test_defaults_are_ollamas() -> None:
    settings = TransferSettings.from_env({})
    assert settings == TransferSettings()
    assert settings.parallel == 16 and settings.retry.max_tries == 6 and settings.direct_io is None


def test_values_from_the_environment() -> None:
    settings = TransferSettings.from_env(
        {
            "POLLAMA_PULL_PART_SIZE": "500000",
            "POLLAMA_PULL_PARALLEL": "2",
            "POLLAMA_PULL_STALL_TIMEOUT": "5",
            "POLLAMA_PULL_RETRIES": "3",
            "POLLAMA_PULL_BACKOFF": "0.5",
            "POLLAMA_PULL_CHECKPOINT": "1",
            "POLLAMA_PULL_DIRECT_IO": "0",
        }
    )
    assert settings.sizing.fixed_size == 500_000 and settings.parallel == 2 and settings.checkpoint_interval == 1
    assert (settings.retry.stall_timeout, settings.retry.max_tries, settings.retry.backoff_base) == (5, 3, 0.5)
    assert not settings.direct_io
    assert TransferSettings.from_env({"POLLAMA_PULL_DIRECT_IO": "true"}).direct_io is True
    assert TransferSettings.from_env({"POLLAMA_PULL_DIRECT_IO": "auto"}).direct_io is None


def test_direct_writes_by_default_only_for_a_blob_too_big_to_stay_cached() -> None:
    """A model that fits stays in the page cache for the load after the pull; a bigger one would only evict."""
    auto = TransferSettings()
    on_metal = lambda: False  # noqa: E731
    assert not auto.direct_for(4_000_000_000, lambda: 16_000_000_000, on_metal)
    assert auto.direct_for(9_000_000_000, lambda: 16_000_000_000, on_metal)
    assert TransferSettings(direct_io=True).direct_for(1, lambda: 16_000_000_000, on_metal)
    assert not TransferSettings(direct_io=False).direct_for(9_000_000_000, lambda: 1, on_metal)


def test_direct_writes_by_default_for_every_blob_where_the_host_reclaims_free_memory() -> None:
    """There every new page-cache page faults in the host first: caching costs the pull, and saves the load nothing."""
    on_vm = lambda: True  # noqa: E731
    assert TransferSettings().direct_for(1_000_000, lambda: 16_000_000_000, on_vm)
    assert not TransferSettings(direct_io=False).direct_for(1_000_000, lambda: 16_000_000_000, on_vm)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("POLLAMA_PULL_PARALLEL", "many", "POLLAMA_PULL_PARALLEL: 'many' is not a number"),
        ("POLLAMA_PULL_PARALLEL", "0", "POLLAMA_PULL_PARALLEL: must be at least 1"),
        ("POLLAMA_PULL_STALL_TIMEOUT", "0", "POLLAMA_PULL_STALL_TIMEOUT: must be at least 0.1"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransferSettings.from_env({name: value})
