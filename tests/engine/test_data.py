"""Dataset loading and column mapping: every format, and errors that point at the file line."""

from __future__ import annotations

import json
import re

import pytest

from grpo_studio.config import loads_run
from grpo_studio.engine.data import DataError, load_prompts, render_prompt, resolve_source
from tiny import build_tokenizer, CHAT_TEMPLATE

ROWS = [{"question": f"What is {i}+1?", "answer": f"so it is\n#### {i + 1}", "level": i % 3} for i in range(6)]


def run_for(tmp_path, source, **data):
    lines = [f'source = "{source}"', 'prompt_column = "question"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    text = "[model]\nname = \"m\"\n[data]\n" + "\n".join(lines) + "\n"
    return loads_run(text, base_dir=tmp_path)


def write(tmp_path, name, rows=ROWS):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows))
    elif name.endswith(".csv"):
        import csv

        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif name.endswith(".parquet"):
        import datasets

        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.mark.parametrize("name", ["train.jsonl", "train.json", "train.csv", "train.parquet"])
def test_every_local_format_maps_prompt_and_answer(tmp_path, name):
    write(tmp_path, name)
    run = run_for(tmp_path, name, answer_pattern=r"####\s*(.+)$")
    data = load_prompts(run)
    ds = data.dataset
    assert len(ds) == 6 and not data.chat
    assert ds[2]["prompt"] == "What is 2+1?"
    assert ds[2]["answer"] == "3"
    assert ds[2]["answer_raw"] == "so it is\n#### 3"
    assert "level" in ds.column_names  # other columns reach the reward functions


def test_template_system_prompt_and_chat(tmp_path):
    write(tmp_path, "t.jsonl")
    run = run_for(tmp_path, "t.jsonl", prompt_template="Level {level}: {prompt}", system_prompt="Be brief.")
    plain = load_prompts(run).dataset[1]["prompt"]
    assert plain == "Be brief.\n\nLevel 1: What is 1+1?"
    chat = load_prompts(run, tokenizer=build_tokenizer(CHAT_TEMPLATE))
    assert chat.chat
    assert chat.dataset[1]["prompt"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Level 1: What is 1+1?"}]
    text = render_prompt(chat.dataset[1]["prompt"], build_tokenizer(CHAT_TEMPLATE))
    assert text == "<system>Be brief.\n<user>Level 1: What is 1+1?\n<assistant>"
    off = run_for(tmp_path, "t.jsonl", chat_template="off")
    assert not load_prompts(off, tokenizer=build_tokenizer(CHAT_TEMPLATE)).chat
    on = run_for(tmp_path, "t.jsonl", chat_template="on")
    with pytest.raises(DataError, match="data.chat_template: is 'on' but the tokenizer has no chat template"):
        load_prompts(on, tokenizer=build_tokenizer())


def test_gsm8k_rows_through_a_local_path(gsm8k_sample, tmp_path):
    run = run_for(tmp_path, str(gsm8k_sample), answer_pattern=r"####\s*(.+)$")
    ds = load_prompts(run).dataset
    assert ds[0]["answer"] == "18" and ds[1]["answer"] == "3" and ds[2]["answer"] == "70000"
    assert ds[0]["prompt"].startswith("Janet")


def test_missing_column_names_the_file_and_real_columns(tmp_path):
    path = write(tmp_path, "t.jsonl")
    run = run_for(tmp_path, "t.jsonl", answer_column="solution")
    with pytest.raises(DataError) as info:
        load_prompts(run)
    assert str(info.value) == (f"{path}:1: no column 'solution' (data.answer_column); "
                               "columns are: question, answer, level")
    run = run_for(tmp_path, "t.jsonl", prompt_template="{context} {prompt}")
    with pytest.raises(DataError, match=r"data.prompt_template: \{context\} is not a column"):
        load_prompts(run)


def test_bad_json_line_is_reported_by_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": 2\n')
    with pytest.raises(DataError) as info:
        load_prompts(run_for(tmp_path, "bad.jsonl"))
    assert str(info.value).startswith(f"{path}:2: not valid JSON: Expecting ',' delimiter")


def test_csv_with_a_ragged_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\na,1\nb,2,extra\n")
    with pytest.raises(DataError, match=rf"{path}:3: expected 2 fields like the header, found 3"):
        load_prompts(run_for(tmp_path, "bad.csv"))


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        load_prompts(run_for(tmp_path, "empty.jsonl"))
    with pytest.raises(DataError, match="data.source: file not found"):
        load_prompts(run_for(tmp_path, "missing.jsonl"))


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    run = run_for(tmp_path, "x.jsonl")
    assert resolve_source(run, "openai/gsm8k", "main").path is None
    assert resolve_source(run, "gsm8k").path is None
    with pytest.raises(DataError, match="file not found"):
        resolve_source(run, "./data/x.csv")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        resolve_source(run, "notes.txt")


def test_answer_pattern_that_never_matches(tmp_path):
    write(tmp_path, "t.jsonl")
    with pytest.raises(DataError, match=re.escape("data.answer_pattern: 'ZZZ(.)' matches no row of column 'answer'")):
        load_prompts(run_for(tmp_path, "t.jsonl", answer_pattern="ZZZ(.)"))
    rows = ROWS[:3] + [{"question": "q", "answer": "no marker", "level": 0}]
    write(tmp_path, "some.jsonl", rows)
    data = load_prompts(run_for(tmp_path, "some.jsonl", answer_pattern=r"####\s*(.+)$"))
    assert data.missing_answers == 1


def test_long_prompts_are_left_out(tmp_path):
    rows = [{"question": "x" * n, "answer": "1"} for n in (5, 50, 8)]
    write(tmp_path, "t.jsonl", rows)
    data = load_prompts(run_for(tmp_path, "t.jsonl", max_prompt_length=10), tokenizer=build_tokenizer())
    assert data.dropped_long == 1 and len(data.dataset) == 2
    with pytest.raises(DataError, match="data.max_prompt_length: every prompt is longer than 2 tokens"):
        load_prompts(run_for(tmp_path, "t.jsonl", max_prompt_length=2), tokenizer=build_tokenizer())


def test_eval_split_of_a_local_file_needs_eval_source(tmp_path):
    write(tmp_path, "t.jsonl")
    with pytest.raises(DataError, match="eval.source: a local training file has no held-out split"):
        load_prompts(run_for(tmp_path, "t.jsonl"), split="eval")
