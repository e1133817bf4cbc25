"""The typed registry, lazy references, name declarations and strict task files."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import inspect
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import registries
from harness.core.discovery import DeclarationError, declared_classes, declared_functions, register_declarations
from harness.core.records import GenerationSettings, TaskSpec, UnknownKeyError
from harness.core.registry import LazyRef, RegistrationError, Registry, UnknownNameError
from harness.defense_api.defense import Defense
from harness.judges import JUDGES_DIR, JudgeFactory, judge_factory
from harness.models.catalog import model_specs
from harness.models.spec import ModelSpec
from harness.tasks import TASKS_DIR, load_spec

ROOT = Path(__file__).resolve().parent.parent
DEFENSES_DIR = ROOT / "defenses"


def make_registry() -> Registry[type[Defense]]:
    registry: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    registry.register("self-reminder", "harness.defenses.self_reminder:SelfReminder", aliases=("self_reminder",))
    registry.register("none", "harness.defenses.none:NoDefense")
    return registry


def fresh_defenses() -> Registry[type[Defense]]:
    """As registries.defenses(), but not the shared one other tests may add test entries to."""
    from harness.defenses import register_defenses

    registry: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    register_defenses(registry)
    return registry


def fresh_judges() -> Registry[JudgeFactory]:
    from harness.judges import register_judges

    registry: Registry[JudgeFactory] = Registry("judge", JudgeFactory)
    register_judges(registry)
    return registry


def task_spec(**changes) -> TaskSpec:
    fields = dict(name="t", version="1", loader="harness.tasks.xstest:load_xstest",
                  metric="harness.core.metrics:safety_metrics")
    return TaskSpec(**{**fields, **changes})


# ------------------------------------------------------------------------------- names and aliases


def test_alias_resolves_to_canonical_and_loads_lazily():
    registry = make_registry()
    assert registry.canonical("self_reminder") == "self-reminder"
    entry = registry.entry("self_reminder")
    assert entry._loaded is None  # nothing imported until asked
    assert entry.target == LazyRef("harness.defenses.self_reminder:SelfReminder")
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
    with pytest.raises(ValueError, match="'none' is already registered"):
        registry.register("none", "x:y")
    with pytest.raises(ValueError, match="'self_reminder' is already registered"):
        registry.register("other", "x:y", aliases=("self_reminder",))


# ------------------------------------------------------------------------------------ typed entries


def test_registering_an_object_of_the_wrong_type_fails_at_once():
    models: Registry[ModelSpec] = Registry("model", ModelSpec)
    with pytest.raises(RegistrationError) as info:
        models.register("t", task_spec())
    message = str(info.value)
    assert "model 't'" in message
    assert "expected an instance of harness.models.spec.ModelSpec" in message
    assert "got TaskSpec" in message
    assert "t" not in models  # nothing half-registered


def test_a_defense_entry_must_be_a_defense_subclass_not_an_instance():
    from harness.defenses.none import NoDefense

    defenses: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    with pytest.raises(RegistrationError, match="expected a subclass of harness.defense_api.defense.Defense"):
        defenses.register("none", NoDefense())
    with pytest.raises(RegistrationError, match="got class builtins.dict"):
        defenses.register("none", dict)
    defenses.register("none", NoDefense)  # the class itself is fine
    assert defenses.get("none") is NoDefense


def test_a_lazy_entry_of_the_wrong_type_fails_when_loaded_naming_the_reference():
    defenses: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    defenses.register("keyword-gcg", "harness.judges.keyword:make_gcg_judge")  # a judge, not a defense
    with pytest.raises(RegistrationError) as info:
        defenses.get("keyword-gcg")
    message = str(info.value)
    assert "defense 'keyword-gcg' (harness.judges.keyword:make_gcg_judge (loaded))" in message
    assert "expected a subclass of harness.defense_api.defense.Defense" in message
    assert "JudgeFactory" in message


def test_a_judge_entry_must_be_a_declared_factory():
    from harness.judges import keyword

    judges: Registry[JudgeFactory] = Registry("judge", JudgeFactory)
    with pytest.raises(RegistrationError, match="expected an instance of harness.judges.JudgeFactory, got function"):
        judges.register("keyword-gcg", keyword.make_gcg_judge.make)  # the undecorated function
    judges.register("keyword-gcg", keyword.make_gcg_judge)
    assert judges.get("keyword-gcg")().name == "keyword-gcg"


def test_an_entry_registered_under_another_name_than_it_declares_is_refused():
    defenses: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    defenses.register("nothing", "harness.defenses.none:NoDefense")
    with pytest.raises(RegistrationError, match="defense 'nothing' .* declares the name 'none'"):
        defenses.get("nothing")
    tasks: Registry[TaskSpec] = Registry("task", TaskSpec)
    with pytest.raises(RegistrationError, match="task 'other' declares the name 't'"):
        tasks.register("other", task_spec())


def test_the_four_registries_are_typed():
    from harness.core.records import TaskSpec as Task

    assert (registries.models().base, registries.models().subclasses) == (ModelSpec, False)
    assert (registries.tasks().base, registries.tasks().subclasses) == (Task, False)
    assert (registries.defenses().base, registries.defenses().subclasses) == (Defense, True)
    assert (registries.judges().base, registries.judges().subclasses) == (JudgeFactory, False)


# --------------------------------------------------------------------------------- lazy references


def test_lazy_ref_loads_prints_and_compares_as_its_string():
    ref = LazyRef("harness.core.metrics:safety_metrics")
    from harness.core.metrics import safety_metrics

    assert ref.load() is safety_metrics
    assert str(ref) == "harness.core.metrics:safety_metrics" and repr(ref) == f"LazyRef({str(ref)!r})"
    assert (ref.module, ref.attribute) == ("harness.core.metrics", "safety_metrics")
    assert ref == LazyRef(str(ref)) and hash(ref) == hash(LazyRef(str(ref)))
    assert ref != "harness.core.metrics:safety_metrics"  # compare str(ref) for that
    assert LazyRef.of(ref) is ref and LazyRef.of(str(ref)) == ref
    assert LazyRef("harness.registries:REGISTRIES.get").load() == registries.REGISTRIES.get  # dotted attribute
    for copied in (copy.copy(ref), copy.deepcopy(ref), pickle.loads(pickle.dumps(ref))):
        assert copied == ref
    with pytest.raises(AttributeError):
        ref.target = "x:y"


@pytest.mark.parametrize("bad", ["harness.core.metrics", ":safety_metrics", "harness.core.metrics:", ""])
def test_lazy_ref_needs_module_and_attribute(bad):
    with pytest.raises(ValueError, match="must look like 'module:attribute'"):
        LazyRef(bad)


def test_lazy_ref_imports_nothing_until_loaded():
    code = (
        "import sys\nfrom harness.core.registry import LazyRef\n"
        "ref = LazyRef('harness.models.tiny:build_tiny')\n"
        "print('harness.models.tiny' in sys.modules, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_task_spec_holds_references_and_round_trips_as_strings():
    spec = task_spec(generation=GenerationSettings(max_new_tokens=8))
    assert isinstance(spec.loader, LazyRef) and isinstance(spec.metric, LazyRef)
    data = spec.to_dict()
    assert data["loader"] == "harness.tasks.xstest:load_xstest"
    assert data["metric"] == "harness.core.metrics:safety_metrics"
    assert data["generation"] == {"max_new_tokens": 8, "batch_size": 1}
    assert TaskSpec.from_dict(json.loads(json.dumps(data))) == spec
    changed = dataclasses.replace(spec, version="2")  # what --task-arg versioning does
    assert changed.loader == spec.loader and changed.version == "2"


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_task_file_round_trips_with_the_same_strings(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = load_spec(path)
    data = spec.to_dict()
    assert (data["loader"], data["metric"]) == (raw["loader"], raw["metric"])
    assert {key: data[key] for key in raw if key != "generation"} == {k: v for k, v in raw.items() if k != "generation"}
    assert TaskSpec.from_dict(yaml.safe_load(yaml.safe_dump(data)), strict=True) == spec
    assert callable(spec.loader.load()) and callable(spec.metric.load())


@pytest.mark.parametrize("spec", [spec for spec, _ in model_specs()], ids=lambda s: s.name)
def test_model_spec_holds_references_and_round_trips_as_strings(spec):
    assert isinstance(spec.builder, LazyRef) and isinstance(spec.fingerprinter, LazyRef)
    data = spec.to_dict()
    assert data["builder"] == str(spec.builder) and data["fingerprinter"] == str(spec.fingerprinter)
    assert ModelSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert ModelSpec(**{**data, "builder": data["builder"]}).builder == spec.builder  # a string is accepted


def test_model_spec_from_dict_refuses_unknown_keys():
    spec, _ = model_specs()[0]
    with pytest.raises(UnknownKeyError, match="unknown key.*buidler"):
        ModelSpec.from_dict({**spec.to_dict(), "buidler": "x:y"})


# --------------------------------------------------------------------------- strict task files


def write_task(tmp_path: Path, **extra) -> Path:
    raw = {**task_spec().to_dict(), **extra}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_a_task_file_with_an_unknown_key_is_refused_naming_key_and_file(tmp_path):
    path = write_task(tmp_path, judeg="keyword-gcg")
    with pytest.raises(UnknownKeyError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message and "unknown key 'judeg'" in message and "did you mean 'judge'" in message


def test_a_nested_unknown_key_is_named_with_its_section(tmp_path):
    path = write_task(tmp_path, generation={"max_new_token": 8})
    with pytest.raises(UnknownKeyError, match=r"in 'generation': unknown key 'max_new_token' \(did you mean"):
        load_spec(path)


def test_stored_records_stay_lenient():
    data = {**task_spec().to_dict(), "added_by_a_later_version": 1, "generation": {"max_new_tokens": 8, "x": 1}}
    assert TaskSpec.from_dict(data) == task_spec(generation=GenerationSettings(max_new_tokens=8))


# ------------------------------------------------------------------------ one name, declared once


def test_every_defense_is_declared_on_its_class_only():
    registry = fresh_defenses()
    for entry in registry:
        cls = entry.load()
        assert issubclass(cls, Defense)
        assert "name" in vars(cls), f"{cls.__qualname__} inherits its name"
        assert (cls.name, cls.aliases, cls.summary) == (entry.name, entry.aliases, entry.help)
        assert cls.summary, f"{entry.name} has no summary for `harness list defenses`"
    # there is no side table left to drift from the classes
    import harness.defenses as package

    assert not [key for key, value in vars(package).items() if isinstance(value, dict) and not key.startswith("__")]


def test_every_defense_class_in_the_package_is_registered():
    registered = {entry.load() for entry in fresh_defenses()}
    for path in sorted(DEFENSES_DIR.glob("[!_]*.py")):
        module = importlib.import_module(f"harness.defenses.{path.stem}")
        own = [cls for cls in vars(module).values()
               if inspect.isclass(cls) and issubclass(cls, Defense) and cls.__module__ == module.__name__]
        assert own and set(own) <= registered, path.name


def test_a_defense_fingerprint_names_it_by_its_registered_name():
    for name in ("none", "self-reminder", "figstep-prompt", "adashield-s", "ecso"):
        assert fresh_defenses().get(name)().fingerprint()["name"] == name


def test_every_judge_is_declared_by_its_factory_only():
    registry = fresh_judges()
    factories: set[JudgeFactory] = set()
    for path in sorted(JUDGES_DIR.glob("[!_]*.py")):
        module = importlib.import_module(f"harness.judges.{path.stem}")
        factories |= {value for value in vars(module).values()
                      if isinstance(value, JudgeFactory) and value.__module__ == module.__name__}
    assert sorted(f.name for f in factories) == sorted(registry.names())
    for factory in factories:
        entry = registry.entry(factory.name)
        assert entry.load() is factory
        assert (factory.aliases, factory.summary) == (entry.aliases, entry.help) and factory.summary
    import harness.judges as package

    assert not [key for key, value in vars(package).items() if isinstance(value, dict) and not key.startswith("__")]


def string_constants(paths: list[Path]) -> list[str]:
    return [node.value for path in paths for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_judge_name_is_spelled_twice_in_the_code():
    constants = string_constants([*JUDGES_DIR.glob("*.py"), ROOT / "harness" / "registries.py"])
    for entry in fresh_judges():
        for key in (entry.name, *entry.aliases):
            assert constants.count(key) == 1, key


def test_no_defense_name_is_spelled_outside_its_class():
    # (the whole package is not searched: "protector" is also the name of a scorer a defense uses)
    registry_code = string_constants([DEFENSES_DIR / "__init__.py", ROOT / "harness" / "registries.py"])
    for entry in fresh_defenses():
        own_module = DEFENSES_DIR / f"{entry.target.module.rsplit('.', 1)[1]}.py"
        assert string_constants([own_module]).count(entry.name) == 1, entry.name
        assert not {entry.name, *entry.aliases} & set(registry_code), entry.name


def test_judge_factory_hides_and_supplies_the_name():
    @judge_factory("echo", aliases=("e",), summary="test")
    def make(threshold: float = 0.5, *, name: str):
        return (name, threshold)

    assert make(threshold=0.7) == ("echo", 0.7)
    assert list(inspect.signature(make).parameters) == ["threshold"]  # what --judge-arg routing sees
    with pytest.raises(TypeError, match="its name is declared"):
        make(name="other")
    with pytest.raises(TypeError, match="keyword-only argument `name`"):
        judge_factory("bad")(lambda: None)


# ------------------------------------------------------------------------------ static discovery


def test_discovery_reads_literals_without_importing(tmp_path):
    (tmp_path / "alpha.py").write_text(
        "import not_installed_anywhere\n"
        "class Helper:\n    pass\n"
        "class Alpha(Base):\n    name = 'alpha'\n    aliases = ('a',)\n    summary = ('first ' 'line')\n"
        "@judge_factory('beta', aliases=['b'], summary='second')\ndef make_beta(*, name):\n    pass\n",
        encoding="utf-8",
    )
    (tmp_path / "_private.py").write_text("class Hidden:\n    name = 'hidden'\n", encoding="utf-8")
    (classes,) = declared_classes(tmp_path, "pkg")
    assert (classes.name, classes.aliases, classes.summary, str(classes.target)) == (
        "alpha", ("a",), "first line", "pkg.alpha:Alpha")
    (functions,) = declared_functions(tmp_path, "pkg", "judge_factory")
    assert (functions.name, functions.aliases, functions.summary, str(functions.target)) == (
        "beta", ("b",), "second", "pkg.alpha:make_beta")


def test_a_computed_declaration_is_reported_with_its_place(tmp_path):
    (tmp_path / "computed.py").write_text("PREFIX = 'x'\nclass C:\n    name = PREFIX + '-c'\n", encoding="utf-8")
    with pytest.raises(DeclarationError, match=r"computed\.py:2: class C: name must be a literal"):
        declared_classes(tmp_path, "pkg")


def test_a_name_declared_twice_is_reported_with_the_second_place(tmp_path):
    (tmp_path / "one.py").write_text("class A:\n    name = 'same'\n", encoding="utf-8")
    (tmp_path / "two.py").write_text("class B:\n    aliases = ()\n    name = 'same'\n", encoding="utf-8")
    registry: Registry[object] = Registry("thing", object)
    with pytest.raises(DeclarationError, match=r"two\.py:1: thing 'same' is already registered"):
        register_declarations(registry, declared_classes(tmp_path, "pkg"))


@pytest.mark.parametrize("kind", ["defenses", "judges"])
def test_listing_imports_no_component_module(kind):
    package = {"defenses": "harness.defenses", "judges": "harness.judges"}[kind]
    code = (
        f"import sys\nfrom harness import registries\nnames = registries.{kind}().names()\n"
        f"print(len(names), sorted(m for m in sys.modules if m.startswith('{package}.') or m == 'torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    count, modules = result.stdout.split(" ", 1)
    assert int(count) >= 12 and modules.strip() == "[]"
