"""The contract with TRL: what GRPO Studio uses beyond TRL's documented API is still there.

When one of these fails after a TRL upgrade, the message says what changed; adapt
grpo_studio/engine/trainer.py (the one module that touches TRL's internals) and move the pin in
pyproject.toml as the README's "Moving the TRL pin" says.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import tiny

import grpo_studio
from grpo_studio.engine import metric_names, trl_contract
from grpo_studio.engine.rewards import TRL_ARGUMENTS

PACKAGE = Path(grpo_studio.__file__).parent
TRAINER = PACKAGE / "engine" / "trainer.py"
ADVICE = trl_contract.ADVICE


def test_installed_trl_has_the_private_methods_we_override_and_call():
    problems = trl_contract.class_problems()
    assert not problems, f"TRL {trl_contract.trl_version()}: " + "; ".join(problems) + ". " + ADVICE


def test_a_changed_private_method_is_named_before_training_starts():
    from trl import GRPOTrainer

    class NewerTrl(GRPOTrainer):  # as if a TRL release changed the signature once more
        def _generate_single_turn(self, prompt_ids, images, num_generations):  # noqa: ANN001
            pass

    with pytest.raises(trl_contract.TrlContractError) as caught:
        trl_contract.check_trainer_class(NewerTrl)
    message = str(caught.value)
    assert "_generate_single_turn(prompt_ids, images, num_generations) no longer takes (prompt_ids, images, " \
           "multimodal_fields, num_generations, has_tool_images)" in message
    assert "Moving the TRL pin" in message and trl_contract.SUPPORTED_TRL in message


def test_the_pin_in_pyproject_is_the_range_the_contract_names():
    import tomllib

    deps = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    (trl,) = [d for d in deps if d.replace(" ", "").startswith("trl")]
    assert trl.replace(" ", "") == "trl" + trl_contract.SUPPORTED_TRL


def _trainer_class_node() -> ast.ClassDef:
    tree = ast.parse(TRAINER.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "StudioGRPOTrainer")


def test_the_trainer_reads_nothing_of_trl_that_the_contract_does_not_list():
    """Every `self.X` that StudioGRPOTrainer does not define itself comes from TRL: it must be listed
    in trl_contract (so the contract checks it), and every `self.args.X` must be a GRPOConfig field."""
    from trl import GRPOConfig

    cls = _trainer_class_node()
    own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    own |= {t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))  # class attributes
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    read, args_read, super_calls = set(), set(), set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (own if isinstance(node.ctx, ast.Store) else read).add(node.attr)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
                and node.value.attr == "args"):
            args_read.add(node.attr)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "super"):
            super_calls.add(node.attr)
    declared = set(trl_contract.TRAINER_ATTRIBUTES) | set(trl_contract.PRIVATE_METHODS)
    undeclared = sorted((read - own) - declared)
    assert not undeclared, (f"trainer.py reads {undeclared} from TRL's GRPOTrainer without listing them in "
                            "engine/trl_contract.py (TRAINER_ATTRIBUTES or PRIVATE_METHODS)")
    assert super_calls - {"__init__"} <= set(trl_contract.PRIVATE_METHODS) | set(trl_contract.OVERRIDDEN_PUBLIC_METHODS), \
        super_calls
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert args_read <= fields, f"GRPOConfig of TRL {trl_contract.trl_version()} lacks {sorted(args_read - fields)}"


def test_no_other_module_touches_trl_internals():
    """TRL's private names and `import trl` stay in the seam (and the two modules that use TRL's public
    API on purpose: the GRPOConfig mapping, and the benchmark's plain-TRL arm)."""
    private = set(trl_contract.PRIVATE_METHODS) | {a for a in trl_contract.TRAINER_ATTRIBUTES if a.startswith("_")}
    seam = {"engine/trainer.py", "engine/trl_contract.py"}
    may_import_trl = seam | {"engine/library_configs.py", "engine/bench_arm.py"}
    # bench_arm times plain TRL's own generation by wrapping _generate_single_turn (covered by the check above)
    may_touch = seam | {"engine/bench_arm.py"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private and rel not in may_touch:
                offenders.append(f"{rel}:{node.lineno}: .{node.attr}")
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "trl" or m.startswith("trl.") for m in modules) and rel not in may_import_trl:
                offenders.append(f"{rel}:{node.lineno}: imports TRL")
    assert not offenders, "TRL's internals outside engine/trainer.py: " + ", ".join(offenders)


PROBE = textwrap.dedent('''\

    def probe_reward(**kwargs):
        """Records which keyword arguments TRL passes to a reward function."""
        import json
        with open(KWARGS_FILE, "w") as f:
            json.dump(sorted(kwargs), f)
        return [0.0 for _ in kwargs["completions"]]
    ''')


@pytest.fixture(scope="module")
def one_step(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict:
    """One real GRPO step on the tiny CPU model (beta > 0, so the KL is logged too)."""
    from grpo_studio.engine.run import train

    folder = tmp_path_factory.mktemp("contract")
    kwargs_file = folder / "kwargs.json"
    rewards = tiny.REWARDS + f"\nKWARGS_FILE = {str(kwargs_file)!r}\n" + PROBE
    run_file = tiny.write_run(folder / "project", tiny_model, rewards=rewards)
    events: list = []
    result = train(run_file, listener=events.append, overrides=[
        "grpo.max_steps=1", "grpo.beta=0.04", "rewards.isolate=false", "run.save_steps=100"])
    assert result.kind == "finished", getattr(result, "details", result)
    return {"events": events, "kwargs": json.loads(kwargs_file.read_text())}


def test_one_training_step_logs_every_metric_the_studio_reads(one_step):
    (metrics,) = [e for e in one_step["events"] if e.kind == "metrics"]
    names = [s.reward_names for s in one_step["events"] if s.kind == "started"][0]
    wanted = [*metric_names.TRL_METRICS, *(metric_names.reward_mean(n) for n in names)]
    missing = [name for name in wanted if name not in metrics.values]
    assert not missing, (f"TRL {trl_contract.trl_version()} no longer logs {missing} (it logged "
                         f"{sorted(metrics.values)}): the plots, alarms and terminal lines that read them would "
                         f"stay empty. Rename them in engine/metric_names.py. {ADVICE}")


def test_one_training_step_reports_its_samples_from_trls_logs(one_step):
    (samples,) = [e for e in one_step["events"] if e.kind == "samples"]
    assert len(samples.samples) == 8
    first = samples.samples[0]
    assert set(first.rewards) == {"correctness_reward", "length_reward", "probe_reward"}
    assert first.advantage is not None and first.prompt and first.length is not None


def test_reward_functions_get_the_arguments_the_studio_promises(one_step):
    missing = sorted((TRL_ARGUMENTS - {"environments"}) - set(one_step["kwargs"]))  # environments: with tools
    assert not missing, (f"TRL {trl_contract.trl_version()} no longer passes {missing} to reward functions "
                         f"(it passes {one_step['kwargs']}); update engine/rewards.py TRL_ARGUMENTS. {ADVICE}")


def test_the_seam_checks_a_built_trainer():
    """check_trainer names the attributes a built trainer lacks (a stand-in without them)."""
    class Bare:
        _logs = {"prompt": [], "completion": []}

    problems = trl_contract.instance_problems(Bare())
    assert "GRPOTrainer has no attribute '_metrics'" in problems
    assert "GRPOTrainer._logs has no key 'advantages'" in problems


def test_reward_model_texts_are_what_trl_builds():
    """The bench scores reward models outside the trainer, on the text TRL would build (without importing TRL)."""
    from trl.data_utils import apply_chat_template

    from grpo_studio.engine.reward_model import reward_model_texts

    tokenizer = tiny.build_tokenizer(tiny.CHAT_TEMPLATE)
    prompts = [[{"role": "system", "content": "add"}, {"role": "user", "content": "2+3="}]]
    completions = [[{"role": "assistant", "content": "5"}]]
    trl_text = apply_chat_template({"messages": prompts[0] + completions[0]}, tokenizer)["text"]
    assert reward_model_texts(prompts, completions, tokenizer) == [trl_text]
    assert reward_model_texts(["2+3="], ["5"], tokenizer) == ["2+3=5"]
