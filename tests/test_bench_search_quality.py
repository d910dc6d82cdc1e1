"""The search-quality benchmark's report logic: pooling earlier runs and issue 11's criterion (no search runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search_quality.py"
spec = importlib.util.spec_from_file_location("bench_search_quality", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _write(path: Path, seeds: list[int], curves: dict[str, np.ndarray], budget: int = 4, pending: int = 1) -> str:
    path.write_text(json.dumps({"seeds": seeds, "budget": budget, "pending": pending,
                                "curves": {k: v.tolist() for k, v in curves.items()}}))
    return str(path)


def test_pooling_keeps_every_seed_s_own_curve_and_reports_the_pool(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = {"x|obj": np.sort(rng.random((3, 4)), axis=1), "y|obj": np.sort(rng.random((3, 4)), axis=1)}
    b = {"x|obj": np.sort(rng.random((2, 4)), axis=1), "y|obj": np.sort(rng.random((2, 4)), axis=1),
         "z|obj": np.zeros((2, 4))}  # only in the second file: dropped from the pool
    fa, fb = _write(tmp_path / "a.json", [1, 2, 3], a), _write(tmp_path / "b.json", [7, 8], b)
    seeds, budget, pending, pooled = bench.load_runs([fa, fb])
    assert seeds == [1, 2, 3, 7, 8] and (budget, pending) == (4, 1)
    assert set(pooled) == {"x|obj", "y|obj"}
    np.testing.assert_array_equal(pooled["x|obj"], np.vstack([a["x|obj"], b["x|obj"]]))
    bench.main(["--load", fa, fb, "--out-dir", str(tmp_path / "out"), "--name", "pool"])
    written = json.loads((tmp_path / "out" / "pool.json").read_text())
    assert written["seeds"] == seeds
    np.testing.assert_allclose(written["curves"]["y|obj"], pooled["y|obj"])
    assert "5 seeds (a, b pooled)" in capsys.readouterr().out


def test_pooling_refuses_other_settings_repeated_seeds_and_bad_files(tmp_path):
    curves = {"x|obj": np.ones((2, 4))}
    first = _write(tmp_path / "a.json", [0, 1], curves)
    with pytest.raises(ValueError, match=r"b.json: budget 4, pending 4; the first file has budget 4, pending 1"):
        bench.load_runs([first, _write(tmp_path / "b.json", [5, 6], curves, pending=4)])
    with pytest.raises(ValueError, match=r"c.json: seeds \[1\] are already in an earlier file"):
        bench.load_runs([first, _write(tmp_path / "c.json", [1, 2], curves)])
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"d\.json: not a search-quality JSON"):
        bench.load_runs([first, str(tmp_path / "d.json")])
    with pytest.raises(ValueError, match=r"has shape \(2, 4\), expected \(3, 4\)"):
        bench.load_runs([_write(tmp_path / "e.json", [0, 1, 2], curves)])


def test_the_criterion_needs_every_median_and_more_seeds_won_than_lost():
    other = np.array([[0.5, 0.6], [0.5, 0.6], [0.5, 0.6]])
    ahead = other + np.array([[0.1, 0.1], [0.1, 0.1], [0.0, -0.1]])  # medians ahead, 2 seeds won, 1 lost
    assert bench.criterion(ahead, other, [1, 2]) == []
    level = other + np.array([[0.0, 0.2], [0.0, 0.0], [0.0, -0.01]])  # medians level; 1 won, 1 lost, 1 tie
    assert bench.criterion(level, other, [1, 2]) == ["seeds @2 1 won, 1 lost"]
    behind = other - 0.05
    assert bench.criterion(behind, other, [1, 2]) == ["median @1 0.4500 < 0.5000", "median @2 0.5500 < 0.6000",
                                                      "seeds @2 0 won, 3 lost"]


trace_spec = importlib.util.spec_from_file_location("trace_search", SCRIPT.with_name("trace_search.py"))
tracer = importlib.util.module_from_spec(trace_spec)
trace_spec.loader.exec_module(tracer)


@pytest.mark.parametrize(("label", "objective", "pending"), [("hill-climbing", "stats-target", 1),
                                                              ("bayesian", "skip-pattern", 4)])
def test_the_tracer_replays_the_benchmark_s_own_search(label, objective, pending):
    rows = tracer.trace(label, objective, 3, budget=6, pending=pending)
    curve, _ = bench.run(label, objective, 3, 6, pending)
    assert [r["best"] for r in rows] == curve  # the same proposals, observed in the same order
    assert sorted(r["trial"] for r in rows) == list(range(6))
    assert all(r["parent"] is not None and r["ops"] for r in rows[1:])
    if label == "bayesian":
        assert all("radius" in r and "acquisition" in r for r in rows[1:] if r["parent"] is not None)
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        tracer.trace(label, "nope", 3)


anatomy_spec = importlib.util.spec_from_file_location("skip_pattern_anatomy",
                                                      SCRIPT.with_name("skip_pattern_anatomy.py"))
anatomist = importlib.util.module_from_spec(anatomy_spec)
anatomy_spec.loader.exec_module(anatomist)


def test_the_skip_pattern_anatomy_adds_up_to_the_objective_s_value():
    row = anatomist.best_anatomy(("hill-climbing", 3, 12, 1))
    curve, _ = bench.run("hill-climbing", "skip-pattern", 3, 12, 1)
    assert row["value"] == curve[-1]  # the best architecture of the benchmark's own search
    terms = 0.55 + 0.11 * min(row["good"], 3) - 0.02 * min(row["bad"], 5) + 0.05 * row["size"]
    assert abs(terms - row["value"]) < 1e-12  # the terms are the objective's, nothing left out
    assert abs(row["size"] - np.exp(-0.5 * (row["over"] / 2.0) ** 2)) < 1e-12


lineage_spec = importlib.util.spec_from_file_location("lineage_anatomy", SCRIPT.with_name("lineage_anatomy.py"))
lineage = importlib.util.module_from_spec(lineage_spec)
lineage_spec.loader.exec_module(lineage)


def test_the_lineage_anatomy_counts_generations_and_children_of_the_best_seen_at_suggestion():
    from morphnas.storage.rundir import TrialRecord

    def trial(i: int, parent: int | None, metric: float | None, suggested: float, finished: float | None,
              status: str = "ok") -> TrialRecord:
        return TrialRecord(id=i, parent=parent, metric=metric, status=status, suggested_at=suggested,
                           finished_at=finished, n_params=100 * (i + 1), skips=i)

    trials = [trial(0, None, 0.70, 0, 1),
              trial(1, 0, 0.75, 1, 2),     # child of the best seen (0)
              trial(2, 0, 0.72, 1.5, 3),   # suggested while 1 ran: 0 was still the best seen
              trial(3, 2, 0.80, 3.5, 4),   # 1 was the best seen: a child of another model
              trial(4, 3, 0.85, 4.5, 5),   # child of the best seen (3): generation 3 via 3 <- 2 <- 0
              trial(5, 4, None, 5.5, 6, status="failed")]  # no metric: not a gain, still a child of the best
    anatomy = lineage.cell_lineage(trials)
    assert anatomy["best"] == 0.85 and anatomy["generation"] == 3.0
    assert anatomy["child_of_best"] == 4 / 5  # 1, 2, 4, 5 were children of the best seen; 3 was not
    assert anatomy["params"] == 500 and anatomy["skips"] == 4
    assert abs(anatomy["gain"] - 0.05) < 1e-12  # gains 0.05, 0.02, 0.08, 0.05
    assert lineage.cell_lineage([trial(0, None, None, 0, 1, status="failed")]) is None
