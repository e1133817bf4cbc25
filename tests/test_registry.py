import pytest

from harness.core.registry import Registry, UnknownNameError


def make_registry():
    registry = Registry("defense")
    registry.register("self-reminder", "harness.defenses.self_reminder:SelfReminder", aliases=("self_reminder",))
    registry.register("none", "harness.defenses.none:NoDefense")
    return registry


def test_alias_resolves_to_canonical_and_loads_lazily():
    registry = make_registry()
    assert registry.canonical("self_reminder") == "self-reminder"
    entry = registry.entry("self_reminder")
    assert entry._loaded is None  # nothing imported until asked
    cls = registry.get("self_reminder")
    assert cls.__name__ == "SelfReminder"


def test_unknown_name_suggests_close_matches():
    registry = make_registry()
    with pytest.raises(UnknownNameError) as info:
        registry.get("self-remindr")
    message = str(info.value)
    assert "unknown defense 'self-remindr'" in message
    assert "self-reminder" in message
    assert "harness list defenses" in message


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownNameError) as info:
        make_registry().get("zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_duplicate_names_and_aliases_are_rejected():
    registry = make_registry()
    with pytest.raises(ValueError):
        registry.register("none", "x:y")
    with pytest.raises(ValueError):
        registry.register("other", "x:y", aliases=("self_reminder",))
