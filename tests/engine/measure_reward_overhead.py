"""Per-call cost of reward isolation: the same reward function called in-process and in the reward process.

    OMP_NUM_THREADS=1 python tests/engine/measure_reward_overhead.py

Each call gets what TRL passes for one generation batch: `n` completions of ~1,000 characters with
their 256 token ids, the `answer` column, `trainer_state`, `log_metric` and `log_extra`. Two
signatures: one that names only what it uses (`completions, answer`) and one with **kwargs, which
receives everything, completion_ids included. The function itself is trivial, so the difference is
the isolation overhead (pickling both ways, the pipe, the wake-ups). Prints median ms per call.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grpo_studio.config import loads_run  # noqa: E402
from grpo_studio.engine.rewards import close_rewards, load_rewards  # noqa: E402

REWARDS = '''
def named_reward(completions, answer):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]


def kwargs_reward(completions, answer, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]
'''


class State:
    global_step, max_steps, epoch, num_train_epochs = 10, 250, 0.1, 1


def batch(n: int) -> dict:
    """Distinct objects per completion, as in training: pickle would send n copies of one object only once."""
    text = ("Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day. " * 13)[:990]
    prompt = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning... " * 3
    return {"prompts": [prompt[:-1] + str(i // 8) for i in range(n)],
            "completions": [f"{text} {i} #### 18" for i in range(n)],
            "completion_ids": [[(i + t) % 32000 for t in range(256)] for i in range(n)],
            "answer": [str(18 + i // 8) for i in range(n)], "answer_raw": [f"... #### {18 + i // 8}" for i in range(n)],
            "trainer_state": State(), "log_metric": lambda k, v: None, "log_extra": lambda k, v: None}


def median_ms(fn, args: dict, repeats: int) -> float:
    fn(**args)  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(**args)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "rewards.py").write_text(REWARDS)
        run = loads_run('[rewards]\nfile = "rewards.py"\n', base_dir=folder)
        started = time.perf_counter()
        isolated = {s.label: s.function for s in load_rewards(run, isolated=True)}
        startup = time.perf_counter() - started
        local = {s.label: s.function for s in load_rewards(run, isolated=False)}
        print(f"reward process start + file load: {1000 * startup:.0f} ms (once per run, and after a timeout)")
        print(f"{'completions':>11}  {'signature':<22}  {'in-process':>10}  {'isolated':>9}  {'overhead':>9}")
        for n in (8, 64, 512):
            args = batch(n)
            repeats = 200 if n < 512 else 50
            for name, label in (("named_reward", "(completions, answer)"), ("kwargs_reward", "(..., **kwargs)")):
                a = median_ms(local[name], args, repeats)
                b = median_ms(isolated[name], args, repeats)
                print(f"{n:>11}  {label:<22}  {a:>8.3f}ms  {b:>7.3f}ms  {b - a:>7.3f}ms")
        close_rewards(list(load_rewards(run, isolated=False)))
        for fn in isolated.values():
            fn.close()


if __name__ == "__main__":
    main()
