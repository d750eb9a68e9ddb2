"""Retraining configuration: the documented shape parses, round-trips through JSON and YAML,
and every mistake is refused with the file, the line, the key and a fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.retraining.config import (
    DriftTrigger,
    PerformanceTrigger,
    Priority,
    RetrainConfig,
    ScheduleTrigger,
    TriggerKind,
    format_duration,
    parse_config,
    parse_duration,
)

EXAMPLE = """\
command: ["python", "train.py"]
workdir: .
timeout: 30m
auto_deploy: false
requeue_interrupted: true
min_expected_gain: 0.01
max_runs_per_day: 4
triggers:
  - name: drift
    kind: drift
    share: 0.3
    features: [income, age]
    sustained: 2
    environment: production
    priority: high
    cooldown: 6h
    max_runs_per_day: 2
  - {name: acc, kind: performance, metric: accuracy, margin: 0.05, sustained: 1, min_labels: 200}
  - {name: nightly, kind: schedule, cron: "0 3 * * *"}
  - {name: labels, kind: volume, rows: 10000}
  - {name: on-alert, kind: alert, rule: accuracy-drop}
  - {name: by-hand, kind: manual}
"""


def test_the_documented_example_parses_into_typed_triggers() -> None:
    config = parse_config(EXAMPLE)
    assert config.command == ["python", "train.py"] and config.webhook is None
    assert config.timeout == 1800.0 and config.data_window == 7 * 86400.0
    assert config.min_expected_gain == 0.01 and config.max_runs_per_day == 4
    assert [t.kind for t in config.triggers] == list(TriggerKind)
    drift = config.trigger("drift")
    assert isinstance(drift, DriftTrigger)
    assert drift.priority is Priority.HIGH and drift.cooldown == 6 * 3600.0
    assert drift.features == ["income", "age"] and drift.sustained == 2
    acc = config.trigger("acc")
    assert isinstance(acc, PerformanceTrigger) and acc.min_labels == 200
    assert acc.priority is Priority.MEDIUM and acc.cooldown == 3600.0  # the defaults
    nightly = config.trigger("nightly")
    assert isinstance(nightly, ScheduleTrigger) and nightly.cron == "0 3 * * *"
    assert nightly.cooldown == 0.0  # a schedule spaces its runs itself
    assert Priority.CRITICAL.rank < Priority.HIGH.rank < Priority.LOW.rank


def test_a_string_command_is_split_like_a_shell_and_a_webhook_can_replace_it() -> None:
    config = parse_config("command: python train.py --data 'my data.parquet'\n")
    assert config.command == ["python", "train.py", "--data", "my data.parquet"]
    hook = parse_config("webhook: {url: 'https://ci.example/hooks/retrain', "
                        "headers: {Authorization: Bearer x}, body: {ref: main}}\n")
    assert hook.command is None and hook.webhook is not None
    assert hook.webhook.method == "POST" and hook.webhook.body == {"ref": "main"}


def test_round_trip_through_json_and_yaml() -> None:
    config = parse_config(EXAMPLE)
    stored = json.loads(json.dumps(config.to_dict()))  # how the store keeps it
    assert RetrainConfig.from_dict(stored) == config
    assert stored["timeout"] == "30m" and stored["triggers"][0]["cooldown"] == "6h"
    assert list(stored["triggers"][0])[:2] == ["name", "kind"]
    shown = config.to_yaml()                              # how the CLI shows it back
    assert parse_config(shown) == config
    assert "share: 0.3" in shown and "None" not in shown and "null" not in shown
    every = parse_config("command: [make, train]\ntriggers: [{name: s, kind: schedule, "
                         "every: 90s, timezone: Europe/Paris}]\n")
    assert parse_config(every.to_yaml()) == every and "every: 90s" in every.to_yaml()


@pytest.mark.parametrize(("old", "new", "line", "key", "fix"), [
    ("share: 0.3", "share: 1.3", 11, "triggers[0].share", "at most 1"),
    ('cron: "0 3 * * *"', 'cron: "0 3 * *"', 19, "triggers[2].cron", "5 fields"),
    ('cron: "0 3 * * *"', 'cron: "0 25 * * *"', 19, "triggers[2].cron", "03:00 every day"),
    ('cron: "0 3 * * *"', 'cron: "0 3 * * *", every: 1h', 19, "triggers[2]", "Keep one"),
    ("cooldown: 6h", "cooldown: 6 hours", 16, "triggers[0].cooldown", "6h or 2d"),
    ("timeout: 30m", "timeout: 0s", 3, "timeout", "6h or 2d"),
    ("priority: high", "priority: urgent", 15, "triggers[0].priority", "critical, high"),
    ("kind: volume", "kind: volumes", 20, "triggers[3].kind", "drift, performance"),
    ("name: labels", "name: acc", 20, "triggers[3].name", "unique"),
    ("rows: 10000", "rows: 0", 20, "triggers[3].rows", "1 or more"),
    (", rows: 10000", "", 20, "triggers[3].rows", "rows: 10000"),
    ("metric: accuracy", "metric: acuracy", 18, "triggers[1].metric", "accuracy, precision"),
    ("    share: 0.3\n    features: [income, age]\n", "", 9, "triggers[0]", "share: 0.3"),
    ("sustained: 2\n", "sustained: 2\n    sustaned: 3\n", 14, "triggers[0].sustaned",
     "Did you mean 'sustained'"),
    ("workdir: .", "webhook: {url: 'https://ci.example/x'}", 2, "webhook", "Keep one"),
    ("workdir: .", "webhook: {url: 'ftp://ci.example/x'}", 2, "webhook.url", "https://"),
    ("name: by-hand", "name: 'by hand'", 22, "triggers[5].name", "letters, digits"),
    ("max_runs_per_day: 4", "max_run_per_day: 4", 7, "max_run_per_day",
     "Did you mean 'max_runs_per_day'"),
    ("timeout: 30m", "timeout: 30m\nschedule: nightly", 4, "schedule", "Allowed here"),
])
def test_errors_name_the_line_the_key_and_the_fix(old: str, new: str, line: int, key: str,
                                                   fix: str) -> None:
    assert old in EXAMPLE
    with pytest.raises(ConfigError) as caught:
        parse_config(EXAMPLE.replace(old, new, 1), source="churn.yaml")
    err = caught.value
    assert str(err).startswith(f"churn.yaml, line {line}: {key}:"), str(err)
    assert err.context["line"] == line and err.context["key"] == key
    assert err.fix is not None and fix in err.fix, err.fix


def test_unknown_keys_are_refused_everywhere() -> None:
    for text in ("command: [x]\nretries: 3\n",
                 "command: [x]\ntriggers: [{name: d, kind: drift, share: 0.3, treshold: 1}]\n",
                 "webhook: {url: 'https://a.example/x', header: {}}\n",
                 "command: [x]\ntriggers: [{name: m, kind: manual, share: 0.3}]\n"):
        with pytest.raises(ConfigError, match="unknown key"):
            parse_config(text)


def test_command_or_webhook_is_required_and_kinds_need_their_fields() -> None:
    with pytest.raises(ConfigError, match="no command or webhook") as caught:
        parse_config("timeout: 1h\n")
    assert caught.value.fix and "command: [python, train.py]" in caught.value.fix
    with pytest.raises(ConfigError, match=r"triggers\[0\].kind: kind is missing"):
        parse_config("command: [x]\ntriggers: [{name: d}]\n")
    with pytest.raises(ConfigError, match=r"triggers\[0\].rule: missing"):
        parse_config("command: [x]\ntriggers: [{name: a, kind: alert}]\n")
    with pytest.raises(ConfigError, match="command is empty"):
        parse_config("command: []\n")
    with pytest.raises(ConfigError, match="cannot be split"):
        parse_config("command: \"python 'train.py\"\n")
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_config("command: [x]\ntriggers: [{name: s, kind: schedule, every: 1h, "
                     "timezone: Mars/Olympus}]\n")


def test_yaml_syntax_and_shape_errors() -> None:
    with pytest.raises(ConfigError, match=r"retrain.yaml, line 2: not valid YAML") as caught:
        parse_config("command: [x]\ntriggers: [{name: d\n")
    assert caught.value.fix == "Fix the YAML syntax at that line."
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("")


def test_stored_json_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        RetrainConfig.from_dict({"command": ["x"], "triggers": [
            {"name": "d", "kind": "drift", "share": 2}]}, source="stored configuration")
    assert str(caught.value).startswith("stored configuration: triggers[0].share:")
    config = parse_config(EXAMPLE)
    with pytest.raises(ConfigError, match="No trigger named 'nope'") as missing:
        config.trigger("nope")
    assert missing.value.fix and "drift, acc, nightly" in missing.value.fix


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "30m", "6h", "2d", 45, "1.5h")] == \
        [90.0, 1800.0, 21600.0, 172800.0, 45.0, 5400.0]
    assert [format_duration(s) for s in (90, 1800, 21600, 172800, 5400, 0.5)] == \
        ["90s", "30m", "6h", "2d", "90m", "0.5s"]
    for bad in ("6 hours", "-1", True, None, "400d", -3):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize("text", ["data_window: 2019-02-30\n", "x: !!float abc\n",
                                  "x: !!int 0x\n", "[" * 2000 + "]" * 2000 + "\n"])
def test_values_yaml_cannot_construct_are_config_errors_in_every_loader(
        text: str, tmp_path: Path) -> None:
    """PyYAML raises ValueError (or RecursionError) for these, not a YAMLError: they were
    500s with a traceback from the API (the red team's), and unexpected errors elsewhere."""
    _refused_by_every_loader(text, tmp_path, "not valid YAML")


def _refused_by_every_loader(text: str, tmp_path: Path, match: str) -> None:
    """The retraining configuration, alert rules and CI policy loaders all refuse ``text``
    as YAML they cannot read (``match``: the retraining loader's message)."""
    from mlops.ci.policy import Policy
    from mlops.errors import MonitoringError, PolicyError
    from mlops.monitoring.rules import load_rules

    with pytest.raises(ConfigError, match=match):
        parse_config(text)
    with pytest.raises(MonitoringError, match="not valid YAML"):
        load_rules(text)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    with pytest.raises(PolicyError, match="not valid YAML"):
        Policy.load(policy)


def _laughs(levels: int) -> str:
    """The "billion laughs": each level an anchor of ten aliases of the one before."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [_laughs(9), "a: &a [1, *a]\n", "a: &a {b: [*a]}\n"])
def test_alias_bombs_and_cycles_are_refused_in_every_loader(text: str, tmp_path: Path
                                                            ) -> None:
    """A 1 KB document of nested aliases is 10^9 values to whatever walks it (validators,
    the audit payload's JSON); an alias inside its own anchor never ends. Both are refused
    with the line, as YAML errors, by the loaders of configuration sent to the API."""
    _refused_by_every_loader(text, tmp_path, r"not valid YAML.*(aliases|own anchor)")


def test_a_long_base_60_integer_is_refused_before_it_is_computed() -> None:
    """YAML 1.1 reads ``1:0:0:...`` as a base-60 integer, built by big-number
    multiplication: 0.7 MB took 12 s (the red team's). Times of day still read."""
    import time

    from mlops._yaml import safe_load

    started = time.monotonic()
    with pytest.raises(ConfigError, match="base-60 integer"):
        parse_config("timeout: " + ":".join(["1"] + ["0"] * 300_000) + "\n")
    assert time.monotonic() - started < 5
    assert safe_load("t: 1:30:00\nq: '1:0:0'\n") == {"t": 5400, "q": "1:0:0"}


def test_anchors_and_merge_keys_of_a_sensible_size_still_load() -> None:
    from mlops._yaml import MAX_NODES, safe_load

    doc = safe_load("base: &b {x: 1, y: [1, 2]}\nother:\n  <<: *b\n  z: 3\nboth: [*b, *b]\n")
    assert doc["other"] == {"x": 1, "y": [1, 2], "z": 3} and doc["both"] == [doc["base"]] * 2
    assert len(safe_load(_laughs(4))["a3"]) == 10  # 1,111 values expanded
    wide = "a: &a [" + ", ".join(["1"] * 999) + "]\nb: [" + ", ".join(["*a"] * 90) + "]\n"
    assert len(safe_load(wide)["b"]) == 90  # 91,000 values expanded: under the limit
    assert MAX_NODES == 100_000
