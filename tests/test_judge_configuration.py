"""Judge configuration at the edges: which tasks a --judge override reaches, how --judge-arg options
are routed, secrets that arrive malformed, error verdicts of a judge that never succeeds."""

from __future__ import annotations

import pytest

from harness import registries
from harness.core.options import parse_option_value, parse_scoped
from harness.judges.llm import JudgeConfigError, make_harmless_judge, parse_harmless
from harness.pipeline.judge import JUDGE_ERROR_LABEL, error_judgement, verdict_kind
from harness.core.records import Generation
from harness.pipeline.judge import build_judges, judge_per_task

ENDPOINT = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}


def test_judge_override_reaches_judged_tasks_only():
    specs = [registries.tasks().get(name) for name in ("xstest", "easyvqa", "pope")]
    assert judge_per_task(specs, None) == {"xstest": "keyword-gcg"}
    # the alias resolves, and utility tasks are never sent to a (possibly paid) judge
    assert judge_per_task(specs, "keyword_eta") == {"xstest": "keyword-eta"}


def test_unscoped_judge_options_go_only_to_judges_that_take_them():
    judges = build_judges(["keyword-gcg", "gpt-harmless"], {"*": {**ENDPOINT, "api_key": "sk-test-key-123"}})
    assert judges["keyword-gcg"].name == "keyword-gcg"  # took no option, did not fail
    assert judges["gpt-harmless"].fingerprint()["model"] == "m"


def test_scoped_judge_options_accept_aliases_and_reject_strays():
    judges = build_judges(["gpt-harmless"], {"gpt4-vlsafe": {**ENDPOINT, "api_key": "sk-test-key-123"}})
    assert judges["gpt-harmless"].fingerprint()["model"] == "m"
    with pytest.raises(ValueError, match="not a judge of this run"):
        build_judges(["keyword-gcg"], {"gpt-harmless": {"model": "m"}})
    with pytest.raises(ValueError, match="keyword-gcg"):
        build_judges(["keyword-gcg"], {"keyword-gcg": {"model": "m"}})


def test_secret_and_name_options_stay_strings():
    assert parse_option_value("api_key", "0123") == "0123"  # YAML would read the octal integer 83
    assert parse_option_value("model", "no") == "no"
    assert parse_option_value("max_retries", "2") == 2
    assert parse_scoped(["gpt-harmless:api_key=0123"], "--judge-arg", "*") == {"gpt-harmless": {"api_key": "0123"}}


def test_api_key_with_line_ending_is_stripped_and_control_characters_refused():
    judge = make_harmless_judge(**ENDPOINT, api_key="sk-SECRETSECRET\r\n")
    assert judge.client.endpoint.api_key.reveal() == "sk-SECRETSECRET"
    with pytest.raises(JudgeConfigError) as error:
        make_harmless_judge(**ENDPOINT, api_key="sk-SECRET\x01SECRET")
    assert "SECRET" not in str(error.value)


def test_harmless_rating_with_leading_zero_parses():
    assert parse_harmless("Rating: [[01]]").label == "safe"
    assert parse_harmless("Rating: [[0]]").label == "unsafe"


def test_error_verdicts_take_the_kind_the_judge_declares():
    generation = Generation(key="k", task="t", sample_id="s", model="m", defense="none", text="x")
    harm_judge = make_harmless_judge(**ENDPOINT, api_key="sk-SECRETSECRET")
    verdict = error_judgement("gpt-harmless", generation, RuntimeError("down: sk-SECRETSECRET"), harm_judge)
    assert (verdict.kind, verdict.label, verdict.unsafe) == ("harm", JUDGE_ERROR_LABEL, None)
    assert "sk-SECRETSECRET" not in verdict.detail  # redacted by the judge's client
    keyword = registries.judges().get("keyword-gcg")()
    assert verdict_kind(keyword) == "refusal"
    assert error_judgement("keyword-gcg", generation, RuntimeError("x"), keyword).kind == "refusal"


def test_an_unscoped_judge_option_no_judge_takes_is_a_typo(caplog):
    with pytest.raises(ValueError, match=r"--judge-arg modle: no judge takes this option"):
        build_judges(["keyword-gcg"], {"*": {"modle": "gpt-4o"}})  # once silently ignored
    with pytest.raises(ValueError, match=r"modle: no judge takes this option .*gpt-harmless: api_key, .*model"):
        build_judges(["keyword-gcg", "gpt-harmless"], {"*": {**ENDPOINT, "api_key": "sk-test-key-123", "modle": "x"}})
    # an option some other judge takes is only unused in a keyword-only run: a warning, not an error
    with caplog.at_level("WARNING"):
        judges = build_judges(["keyword-gcg"], {"*": {"model": "gpt-4o"}})
    assert list(judges) == ["keyword-gcg"] and "taken by no judge of this run" in caplog.text


def test_eval_and_judge_build_judges_by_one_rule():
    """An option for one judge of several goes to the judges that take it, in `harness judge` as in
    `harness eval` (before, `harness judge` passed it to every judge and keyword-gcg refused it)."""
    from harness.pipeline.rejudge import make_judges

    options = {"*": {**ENDPOINT, "api_key": "sk-test-key-123"}}
    judged_by_eval = build_judges(["keyword-gcg", "gpt-harmless"], options)
    judged_by_rejudge = make_judges(["keyword-gcg", "gpt-harmless"], options)
    assert [judge.name for judge in judged_by_rejudge] == list(judged_by_eval) == ["keyword-gcg", "gpt-harmless"]
    assert judged_by_rejudge[1].fingerprint() == judged_by_eval["gpt-harmless"].fingerprint()
    assert judged_by_rejudge[1].fingerprint()["model"] == "m"
