"""data.rank (weighted criteria after hard conditions) and tasks.choose (max Σ p within
limits, on the seeds' HiGHS model), checked against hand computation and brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied

FLATS = ("flat,rent,rating,distance\n"
         "Ash,100,4.0,5\n"
         "Birch,200,5.0,1\n"
         "Cedar,150,3.0,3\n"
         "Dune,300,5.0,2\n")
CRITERIA = [{"column": "rent", "weight": 2, "goal": "min"}, {"column": "rating", "weight": 1},
            {"column": "distance", "weight": 1, "goal": "min"}]


@pytest.fixture
def flats(ws):
    (ws / "flats.csv").write_text(FLATS)
    return "flats.csv"


def test_rank_scores_by_weighted_min_max_after_the_conditions(call, flats):
    out = call("data.rank", path=flats, criteria=CRITERIA,
               where=[{"column": "rent", "op": "<=", "value": 250}]).output
    # over Ash, Birch, Cedar: rent 100..200, rating 3..5, distance 1..5; shares .5/.25/.25
    assert [(r["option"], r["rank"], r["score"]) for r in out["ranked"]] == [
        ("Ash", 1, 62.5), ("Birch", 2, 50.0), ("Cedar", 3, 37.5)]
    assert out["weights"] == {"rent": 0.5, "rating": 0.25, "distance": 0.25}
    assert "rent 50% (lower is better)" in out["weights_text"] and out["text"].startswith("Weights used: rent 50%")
    assert out["ranked"][0]["criteria"]["rent"] == {"value": 100, "normalized": 1.0, "weight": 0.5, "points": 50.0}
    assert out["ranked"][0]["criteria"]["distance"]["points"] == 0.0
    assert out["excluded"] == [{"option": "Dune", "reason": "fails rent <= 250: it is 300"}]
    assert (out["best"], out["count"], out["of"], out["ties"]) == ("Ash", 3, 4, [])
    s = out["ranked"][0]["sentence"]
    assert s.startswith("Ash ranks 1st of 3 with 62.5 of 100 points:")
    assert "rent 100 (lowest, 50 of 50 points)" in s and "distance 5 (highest, 0 of 25 points)" in s
    assert all(r["sentence"] in out["text"] for r in out["ranked"])


def test_rank_follows_the_weights(call, flats):
    heavy = [dict(c, weight=4) if c["column"] == "rating" else c for c in CRITERIA]
    out = call("data.rank", path=flats, criteria=heavy, where=[{"column": "rent", "op": "<", "value": 250}]).output
    assert out["best"] == "Birch" and out["ranked"][0]["score"] == pytest.approx(71.43, abs=0.01)
    assert out["weights"]["rating"] == pytest.approx(4 / 7, abs=1e-4)
    # no condition: Dune is an option, and the scale spans all four
    out = call("data.rank", path=flats, criteria=[{"column": "rating"}]).output
    assert out["count"] == 4 and out["weights"] == {"rating": 1.0} and out["excluded"] == []


def test_rank_ties_share_a_rank(call, ws):
    (ws / "t.csv").write_text("name,speed,price\nP,10,5\nQ,10,5\nR,5,1\nS,1,9\n")
    out = call("data.rank", path="t.csv", criteria=[{"column": "speed"}, {"column": "price", "goal": "min"}]).output
    assert [(r["option"], r["rank"]) for r in out["ranked"]] == [("P", 1), ("Q", 1), ("R", 3), ("S", 4)]
    assert out["ties"] == [["P", "Q"]]
    assert "tied with Q" in out["ranked"][0]["sentence"] and "tied with P" in out["ranked"][1]["sentence"]


def test_rank_missing_column_names_it(call, flats):
    with pytest.raises(InvalidArgument) as e:
        call("data.rank", path=flats, criteria=[{"column": "rent"}, {"column": "speed"}])
    assert e.value.field == "criteria[1].column" and "'speed'" in str(e.value) and "rent" in str(e.value)
    with pytest.raises(InvalidArgument) as e:
        call("data.rank", path=flats, criteria=[{"column": "rent"}], where=[{"column": "pets", "op": "==", "value": 1}])
    assert e.value.field == "where[0].column" and "'pets'" in str(e.value)
    with pytest.raises(NotFound):
        call("data.rank", path="nope.csv", criteria=[{"column": "rent"}])


def test_rank_non_numeric_values(call, ws):
    (ws / "c.csv").write_text('car,price,size\nAlto,"$1,200",small\nBora,900,large\nCivic,45%,medium\n')
    with pytest.raises(InvalidArgument) as e:
        call("data.rank", path="c.csv", criteria=[{"column": "size"}])
    msg = str(e.value)
    assert e.value.field == "criteria[0].column" and "'size'" in msg and "'small'" in msg and "Alto" in msg
    out = call("data.rank", path="c.csv", criteria=[{"column": "price", "goal": "min"}]).output
    assert [(r["option"], r["criteria"]["price"]["value"]) for r in out["ranked"]] == [
        ("Civic", 45), ("Bora", 900), ("Alto", 1200)]


def test_rank_condition_on_numbers_needs_a_number(call, flats):
    with pytest.raises(InvalidArgument) as e:
        call("data.rank", path=flats, criteria=CRITERIA, where=[{"column": "rent", "op": ">", "value": "cheap"}])
    assert e.value.field == "where[0].value" and "'cheap'" in str(e.value) and "'rent'" in str(e.value)


def test_rank_missing_values_weights_and_empty_results(call, ws):
    (ws / "m.csv").write_text("opt,a,b\nX,1,\nY,2,3\nX,3,1\n")
    out = call("data.rank", path="m.csv", criteria=[{"column": "a"}, {"column": "b"}]).output
    names = [r["option"] for r in out["ranked"]]
    assert sorted(names) == ["X (row 1)", "X (row 3)", "Y"]          # a repeated name gets its row
    x1 = next(r for r in out["ranked"] if r["option"] == "X (row 1)")
    assert x1["criteria"]["b"] == {"value": None, "normalized": 0.0, "weight": 0.5, "points": 0.0}
    assert "no value" in x1["sentence"] and any("have no b" in n for n in out["notes"])
    with pytest.raises(InvalidArgument) as e:
        call("data.rank", path="m.csv", criteria=[{"column": "a", "weight": 0}])
    assert "weight" in e.value.field
    with pytest.raises(InvalidArgument):
        call("data.rank", path="m.csv", criteria=[{"column": "a"}, {"column": "A"}])   # one column twice
    out = call("data.rank", path="m.csv", criteria=[{"column": "a"}], where=[{"column": "a", "op": ">", "value": 9}]).output
    assert out["ranked"] == [] and out["best"] is None and len(out["excluded"]) == 3
    out = call("data.rank", path="m.csv", criteria=[{"column": "a"}], limit=1, label="opt").output
    assert len(out["ranked"]) == 1 and out["count"] == 3


def test_rank_saves_inside_the_workspace_only(call, flats, ws, reg, ctx):
    out = call("data.rank", path=flats, criteria=CRITERIA, save_to="ranking.csv")
    assert out.files == ["ranking.csv"] and out.output["saved_to"] == "ranking.csv"
    assert (ws / "ranking.csv").read_text().splitlines()[1].startswith("1,Birch,")
    with pytest.raises(PermissionDenied):
        call("data.rank", path=flats, criteria=CRITERIA, save_to="../ranking.csv")
    with pytest.raises(PermissionDenied):
        call("data.rank", path="../flats.csv", criteria=CRITERIA)
    assert dict(reg.get("data.rank").path_args) == {"path": "r", "save_to": "w"}


# ── tasks.choose ────────────────────────────────────────────────────────────
def _best(tasks, limit, budget):
    """Brute force: the largest Σ p of a subset that fits (EDF meets every deadline)."""
    best = 0.0
    for k in range(len(tasks) + 1):
        for sub in itertools.combinations(tasks, k):
            if limit is not None and sum(t["time"] for t in sub) > limit + 1e-9:
                continue
            if budget is not None and sum(t["cost"] for t in sub) > budget + 1e-9:
                continue
            end, ok = 0.0, True
            for t in sorted(sub, key=lambda t: t.get("deadline", math.inf)):
                end += t["time"]
                ok &= end <= t.get("deadline", math.inf) + 1e-9
            if ok:
                best = max(best, sum(t["p"] for t in sub))
    return best


def test_choose_is_optimal_and_its_order_meets_the_deadlines(call):
    rng = random.Random(7)
    for case in range(12):
        tasks = []
        for i in range(7):
            t = {"name": f"t{i}", "p": round(rng.uniform(0.05, 1), 2), "time": rng.randint(1, 6),
                 "cost": rng.randint(0, 9)}
            if rng.random() < 0.3:
                t["deadline"] = rng.randint(2, 12)
            tasks.append(t)
        limit, budget = rng.choice([None, 8, 12]), rng.choice([None, 15])
        args = {"tasks": tasks} | ({"time_limit": limit} if limit else {}) | ({"budget": budget} if budget else {})
        out = call("tasks.choose", **args).output
        assert out["expected"] == pytest.approx(_best(tasks, limit, budget), abs=1e-6), case
        assert out["optimal"] is True
        by = {t["name"]: t for t in tasks}
        for c in out["chosen"]:
            assert c["end"] <= by[c["name"]].get("deadline", math.inf) + 1e-9
        assert out["time_used"] <= (limit or math.inf)
        assert {c["name"] for c in out["chosen"]} | {x["name"] for x in out["left_out"]} == set(by)
        assert [c["order"] for c in out["chosen"]] == list(range(1, len(out["chosen"]) + 1))


def test_choose_from_a_table_with_percentages(call, ws):
    (ws / "t.csv").write_text("task,chance,hours\nslides,90%,3\nmemo,60%,1\nreport,70%,4\nvideo,50%,9\n")
    out = call("tasks.choose", path="t.csv", name_column="task", p_column="chance", time_column="hours",
               time_limit=8).output
    assert [c["name"] for c in out["chosen"]] == ["memo", "slides", "report"]    # most chance per hour first
    assert out["expected"] == pytest.approx(2.2) and out["time_used"] == 8
    assert out["notes"] == ["success chances above 1 were read as percentages"]
    video = next(x for x in out["left_out"] if x["name"] == "video")
    assert "more than the whole time limit" in video["reason"]
    assert out["text"].startswith("Chose 3 of 4 tasks") and "1. memo" in out["text"]


def test_choose_bad_input(call, ws):
    (ws / "t.csv").write_text("name,p,time\na,0.5,1\nb,high,2\n")
    with pytest.raises(InvalidArgument) as e:
        call("tasks.choose", path="t.csv")
    assert e.value.field == "p_column" and "'high'" in str(e.value)
    with pytest.raises(InvalidArgument) as e:
        call("tasks.choose", path="t.csv", p_column="chance")
    assert e.value.field == "p_column" and "'chance'" in str(e.value)
    one = [{"name": "a", "p": 0.5, "time": 1}]
    with pytest.raises(InvalidArgument) as e:
        call("tasks.choose", tasks=one, budget=5)
    assert "cost" in str(e.value)
    with pytest.raises(InvalidArgument):
        call("tasks.choose", tasks=one, time_limit=0)
    with pytest.raises(InvalidArgument):
        call("tasks.choose")
    with pytest.raises(InvalidArgument):
        call("tasks.choose", tasks=one, path="t.csv")
    with pytest.raises(InvalidArgument):
        call("tasks.choose", tasks=one + one)
    with pytest.raises(InvalidArgument) as e:
        call("tasks.choose", tasks=[{"name": "a", "p": 1.5, "time": 1}])
    assert e.value.field == "tasks.0.p"
