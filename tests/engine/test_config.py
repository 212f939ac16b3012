"""The run file: round trip, every validation error, overrides, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_studio import config as c


def problems_of(data: dict) -> list[str]:
    with pytest.raises(c.ConfigError) as info:
        c.config_from_dict(data)
    return [str(p) for p in info.value.problems]


def valid(**sections) -> c.RunConfig:
    data = {"model": {"name": "m"}, "data": {"source": "d.jsonl"}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return c.config_from_dict(data)


def test_round_trip_keeps_every_value(tmp_path):
    cfg = valid(grpo={"learning_rate": 3e-4, "num_generations": 4, "extra": {"repetition_penalty": 1.1}},
                lora={"target_modules": "all-linear", "r": 8},
                rewards={"functions": [{"name": "a_reward", "weight": 0.5}, {"name": "b_reward"}]})
    path = tmp_path / "run.toml"
    c.save_run(cfg, path)
    again = c.load_run(path).config
    assert again == cfg
    assert '{ name = "a_reward", weight = 0.5 }' in path.read_text()


def test_defaults_are_documented():
    specs = c.all_field_specs()
    assert len(specs) > 60
    for spec in specs:
        assert spec.help, f"{spec.path} has no help"
    lr = next(s for s in specs if s.path == "grpo.learning_rate")
    assert lr.kind == "float" and lr.minimum == 0 and lr.exclusive_minimum and lr.maximum == 1.0
    opt = next(s for s in specs if s.path == "grpo.optimizer")
    assert opt.kind == "choice" and "adamw_8bit" in opt.choices
    assert next(s for s in specs if s.path == "grpo.epsilon").advanced


@pytest.mark.parametrize("data, expected", [
    ({"grpo": {"bogus": 1}}, "grpo.bogus: unknown setting"),
    ({"nonsense": {}}, "nonsense: unknown section"),
    ({"grpo": {"num_generations": 1}}, "grpo.num_generations: must be >= 2, got 1"),
    ({"lora": {"dropout": 1.0}}, "lora.dropout: must be < 1.0, got 1.0"),
    ({"grpo": {"optimizer": "adam"}}, "grpo.optimizer: must be one of"),
    ({"quantization": {"load_in": "3bit"}}, "quantization.load_in: must be one of"),
    ({"grpo": {"learning_rate": "fast"}}, "grpo.learning_rate: input should be a valid number"),
    ({"data": {"answer_pattern": "(unclosed"}}, "data.answer_pattern: not a valid regular expression"),
    ({"grpo": {"extra": {"learning_rate": 1}}}, "grpo.extra: 'learning_rate' is a setting of its own: use "
                                                "grpo.learning_rate"),
    ({"lora": {"target_modules": []}}, "lora.target_modules: needs at least one module name"),
    ({"run": {"name": "my run/1"}}, "run.name: use letters, digits"),
    ({"rewards": {"functions": [{"name": "x", "bogus": 1}]}}, "rewards.functions[0].bogus: unknown setting"),
])
def test_field_errors_name_the_path_and_reason(data, expected):
    assert any(p.startswith(expected) for p in problems_of(data)), problems_of(data)


def test_an_unknown_setting_points_at_the_nearest_name_and_at_grpo_studio_settings():
    problems = problems_of({"grpo": {"learning_rat": 1, "bogus": 1}, "lora": {"targets": 1}, "gpro": {}})
    assert "grpo.learning_rat: unknown setting (did you mean grpo.learning_rate? `grpo-studio settings grpo` " \
           "lists them)" in problems
    assert "grpo.bogus: unknown setting (`grpo-studio settings grpo` lists them)" in problems
    assert any(p.startswith("lora.targets: unknown setting (did you mean lora.target_modules?") for p in problems)
    assert any(p.startswith("gpro: unknown section (did you mean [grpo]?") for p in problems)
    assert not any("validate --help" in p for p in problems)


def test_cross_field_checks():
    cfg = valid(grpo={"per_device_train_batch_size": 8, "num_generations": 3})
    assert [str(p) for p in cfg.problems()] == [
        "grpo.num_generations: 3 does not divide the generation batch 8 (8 completions x 1 accumulation steps)"]
    cfg = valid(grpo={"max_completion_length": 600}, data={"max_prompt_length": 512},
                model={"max_seq_length": 1024})
    assert str(cfg.problems()[0]) == ("model.max_seq_length: 1024 is shorter than data.max_prompt_length 512 + "
                                      "grpo.max_completion_length 600 = 1112")
    cfg = c.config_from_dict({})
    found = {p.field for p in cfg.problems()}
    assert {"model.name", "data.source"} <= found
    cfg = valid(quantization={"load_in": "4bit"}, lora={"enabled": False})
    assert "quantization.load_in" in {p.field for p in cfg.problems()}
    cfg = valid(rewards={"functions": [{"name": "a"}, {"name": "a"}, {"name": "b", "model": "m"}]})
    found = [str(p) for p in cfg.problems()]
    assert "rewards.functions[2]: give either name (a function) or model, not both" in found
    assert "rewards.functions: 'a' is listed twice" in found
    assert valid().problems() == []


def test_generation_batch_size_setting():
    cfg = valid(grpo={"per_device_train_batch_size": 4, "generation_batch_size": 12, "num_generations": 8})
    fields = [str(p) for p in cfg.problems()]
    assert "grpo.num_generations: 8 does not divide the generation batch 12 (grpo.generation_batch_size 12)" \
        in fields


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model]\nname = \"x\"\nr = = 3\n")
    with pytest.raises(c.ConfigError) as info:
        c.load_run(path)
    assert "line 3" in str(info.value) and str(path) in str(info.value)


def test_missing_run_file(tmp_path):
    with pytest.raises(c.ConfigError, match="run file not found"):
        c.load_run(tmp_path / "nope.toml")


def test_overrides_parse_toml_values_and_bare_words(tmp_path):
    path = tmp_path / "run.toml"
    c.save_run(valid(), path)
    run = c.load_run(path, ["grpo.max_steps=7", "grpo.learning_rate=1e-4", "model.name=org/model-1",
                            "lora.target_modules=[\"q_proj\"]", "lora.enabled=false", "data.source=./x y.csv"])
    cfg = run.config
    assert cfg.grpo.max_steps == 7 and cfg.grpo.learning_rate == 1e-4
    assert cfg.model.name == "org/model-1" and cfg.lora.target_modules == ["q_proj"]
    assert cfg.lora.enabled is False and cfg.data.source == "./x y.csv"
    with pytest.raises(c.ConfigError, match="grpo.max_steps: must be >= 1"):
        c.load_run(path, ["grpo.max_steps=0"])
    with pytest.raises(c.ConfigError, match="expected section.key=value"):
        c.load_run(path, ["max_steps"])


def test_relative_paths_resolve_against_the_run_file(tmp_path):
    path = tmp_path / "sub" / "run.toml"
    path.parent.mkdir()
    c.save_run(valid(), path)
    run = c.load_run(path)
    assert run.resolve("rewards.py") == (tmp_path / "sub" / "rewards.py").resolve()
    assert run.resolve("/abs/x") == Path("/abs/x")


def test_set_value_validates():
    cfg = valid()
    assert c.set_value(cfg, "grpo.beta", 0.04).grpo.beta == 0.04
    with pytest.raises(c.ConfigError, match="grpo.beta: must be >= 0"):
        c.set_value(cfg, "grpo.beta", -1)
    assert c.get_value(cfg, "lora.r") == 16
